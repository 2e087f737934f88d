/// The records of the task protocol, with Agentex's field sets and status names: a task is one
/// conversation or job of an agent; events, messages, a state and a tracker hang off it.

public enum TaskStatus: String, Sendable, CaseIterable {
    case running = "RUNNING"
    case completed = "COMPLETED"
    case failed = "FAILED"
    case canceled = "CANCELED"
    case terminated = "TERMINATED"
    case timedOut = "TIMED_OUT"
    case interrupted = "INTERRUPTED"
    case deleted = "DELETED"
}

/// A task. `deploymentId` is Cutover's own: the deployment that owns the task (task affinity); nil when
/// it was created through the agent's legacy URL.
public struct AgentTask: Sendable, Equatable {
    public var id: String
    public var agentId: String
    public var deploymentId: String?
    public var name: String?
    public var status: TaskStatus
    public var statusReason: String?
    public var params: [String: JSONValue]?
    public var taskMetadata: [String: JSONValue]?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        id: String, agentId: String, deploymentId: String?, name: String?, status: TaskStatus = .running,
        statusReason: String? = nil, params: [String: JSONValue]? = nil, taskMetadata: [String: JSONValue]? = nil,
        createdAt: Timestamp, updatedAt: Timestamp
    ) {
        self.id = id
        self.agentId = agentId
        self.deploymentId = deploymentId
        self.name = name
        self.status = status
        self.statusReason = statusReason
        self.params = params
        self.taskMetadata = taskMetadata
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// An event sent to a task (`event/send`); `sequenceId` counts 1, 2, … per task.
public struct TaskEvent: Sendable, Equatable {
    public var id: String
    public var taskId: String
    public var agentId: String
    public var sequenceId: Int64
    public var content: JSONValue?
    public var createdAt: Timestamp

    public init(id: String, taskId: String, agentId: String, sequenceId: Int64, content: JSONValue?, createdAt: Timestamp) {
        self.id = id
        self.taskId = taskId
        self.agentId = agentId
        self.sequenceId = sequenceId
        self.content = content
        self.createdAt = createdAt
    }
}

public enum StreamingStatus: String, Sendable {
    case inProgress = "IN_PROGRESS"
    case done = "DONE"
}

/// A message of a task: the user's, or the agent's. `content` is a TaskMessageContent object
/// (`{"type": "text", "author": "agent", "content": "…"}` and its siblings), kept as sent.
public struct TaskMessage: Sendable, Equatable {
    public var id: String
    public var taskId: String
    public var content: JSONValue
    public var streamingStatus: StreamingStatus?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        id: String, taskId: String, content: JSONValue, streamingStatus: StreamingStatus?, createdAt: Timestamp,
        updatedAt: Timestamp
    ) {
        self.id = id
        self.taskId = taskId
        self.content = content
        self.streamingStatus = streamingStatus
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// The agent's working state for a task: one JSON object per task and agent.
public struct TaskState: Sendable, Equatable {
    public var id: String
    public var taskId: String
    public var agentId: String
    public var state: [String: JSONValue]
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(id: String, taskId: String, agentId: String, state: [String: JSONValue], createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id
        self.taskId = taskId
        self.agentId = agentId
        self.state = state
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// How far the agent has processed a task's events. Made with the task; its id is the task's id, so the
/// SDK's default handler, which addresses the tracker by task id, finds it.
public struct TaskTracker: Sendable, Equatable {
    public var id: String
    public var agentId: String
    public var taskId: String
    public var lastProcessedEventId: String?
    public var status: String?
    public var statusReason: String?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        id: String, agentId: String, taskId: String, lastProcessedEventId: String? = nil, status: String? = nil,
        statusReason: String? = nil, createdAt: Timestamp, updatedAt: Timestamp
    ) {
        self.id = id
        self.agentId = agentId
        self.taskId = taskId
        self.lastProcessedEventId = lastProcessedEventId
        self.status = status
        self.statusReason = statusReason
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// A tracing span an agent records (input, output and data are any JSON).
public struct Span: Sendable, Equatable {
    public var id: String
    public var traceId: String
    public var parentId: String?
    public var name: String
    public var startTime: Timestamp
    public var endTime: Timestamp?
    public var input: JSONValue?
    public var output: JSONValue?
    public var data: JSONValue?
    public var taskId: String?
    /// The agent whose key wrote it (nil for an admin): scopes reads to that agent.
    public var agentId: String?

    public init(
        id: String, traceId: String, parentId: String?, name: String, startTime: Timestamp, endTime: Timestamp?,
        input: JSONValue?, output: JSONValue?, data: JSONValue?, taskId: String?, agentId: String?
    ) {
        self.id = id
        self.traceId = traceId
        self.parentId = parentId
        self.name = name
        self.startTime = startTime
        self.endTime = endTime
        self.input = input
        self.output = output
        self.data = data
        self.taskId = taskId
        self.agentId = agentId
    }
}
