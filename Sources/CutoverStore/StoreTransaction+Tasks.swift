import CutoverCore
import SQLKit

/// Which tasks a task list returns.
public struct TaskFilter: Sendable, Equatable {
    public var agentId: String?
    public var status: TaskStatus?
    /// DELETED tasks are left out unless asked for by `status`.
    public init(agentId: String? = nil, status: TaskStatus? = nil) {
        self.agentId = agentId
        self.status = status
    }
}

extension StoreTransaction {
    // MARK: Tasks

    static let taskColumns = """
        id, agent_id, deployment_id, name, status, status_reason, params, task_metadata, created_at, updated_at
        """

    /// Inserts `task` and, in this transaction, its tracker (id = the task's id, nothing processed yet).
    public func insertTask(_ task: AgentTask) async throws {
        try await run("""
            INSERT INTO tasks (\(unsafeRaw: Self.taskColumns)) VALUES (\(bind: task.id), \(bind: task.agentId), \
            \(bind: task.deploymentId), \(bind: task.name), \(bind: task.status.rawValue), \(bind: task.statusReason), \
            \(bind: try Self.encode(task.params)), \(bind: try Self.encode(task.taskMetadata)), \
            \(bind: task.createdAt.microseconds), \(bind: task.updatedAt.microseconds))
            """)
        try await run("""
            INSERT INTO task_trackers (id, agent_id, task_id, last_processed_event_id, status, status_reason, \
            created_at, updated_at) VALUES (\(bind: task.id), \(bind: task.agentId), \(bind: task.id), NULL, NULL, NULL, \
            \(bind: task.createdAt.microseconds), \(bind: task.createdAt.microseconds))
            """)
    }

    public func task(id: String, lock: Bool = false) async throws -> AgentTask? {
        try await tasks(where: "id = \(bind: id)", lock: lock).first
    }

    public func task(name: String, lock: Bool = false) async throws -> AgentTask? {
        try await tasks(where: "name = \(bind: name)", lock: lock).first
    }

    private func tasks(where condition: SQLQueryString, lock: Bool) async throws -> [AgentTask] {
        let query: SQLQueryString = "SELECT \(unsafeRaw: Self.taskColumns) FROM tasks WHERE \(condition)\(unsafeRaw: lock ? dialect.forUpdate : "")"
        return try await rows(query).map(Self.decodeTask)
    }

    /// Writes every mutable field of `task`: deployment_id, status, status_reason, params, task_metadata, updated_at.
    public func updateTask(_ task: AgentTask) async throws {
        try await run("""
            UPDATE tasks SET deployment_id = \(bind: task.deploymentId), status = \(bind: task.status.rawValue), \
            status_reason = \(bind: task.statusReason), params = \(bind: try Self.encode(task.params)), \
            task_metadata = \(bind: try Self.encode(task.taskMetadata)), updated_at = \(bind: task.updatedAt.microseconds) \
            WHERE id = \(bind: task.id)
            """)
    }

    /// A page of tasks; `page.orderBy` is one of the columns the API allows.
    public func listTasks(_ filter: TaskFilter, page: Page) async throws -> [AgentTask] {
        var condition: SQLQueryString = "1 = 1"
        if let agentId = filter.agentId { condition.appendInterpolation(" AND agent_id = \(bind: agentId)" as SQLQueryString) }
        if let status = filter.status {
            condition.appendInterpolation(" AND status = \(bind: status.rawValue)" as SQLQueryString)
        } else {
            condition.appendLiteral(" AND status <> 'DELETED'")
        }
        let query: SQLQueryString = """
            SELECT \(unsafeRaw: Self.taskColumns) FROM tasks WHERE \(condition) \
            \(unsafeRaw: taskOrderClause(page)) LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
            """
        return try await rows(query).map(Self.decodeTask)
    }

    // MARK: Task events

    static let taskEventColumns = "id, task_id, agent_id, sequence_id, content, created_at"

    /// Appends an event with the task's next `sequence_id` (1, 2, … per task): the counter is bumped in
    /// the same statement that reads it, so concurrent appends (callers also hold the task's row lock)
    /// never share or skip a number. Throws `notFound` for an unknown task.
    public func appendTaskEvent(taskId: String, agentId: String, content: JSONValue?, at now: Timestamp) async throws -> TaskEvent {
        guard let row = try await rows(
            "UPDATE tasks SET event_count = event_count + 1 WHERE id = \(bind: taskId) RETURNING event_count"
        ).first else { throw CutoverError.notFound("task '\(taskId)' not found") }
        let event = TaskEvent(
            id: Identifiers.uuid(), taskId: taskId, agentId: agentId,
            sequenceId: try row.int(), content: content, createdAt: now)
        try await insertTaskEvent(event)
        return event
    }

    /// Stores `event` as it is, its sequence id included.
    func insertTaskEvent(_ event: TaskEvent) async throws {
        _ = try await rows(Self.insertTaskEvent, [
            .text(event.id), .text(event.taskId), .text(event.agentId), .int(event.sequenceId),
            .text(event.content.map(JSONCodec.string)), .time(event.createdAt),
        ])
    }

    private static let insertTaskEvent = Statement(
        "INSERT INTO task_events (\(taskEventColumns)) VALUES ($1, $2, $3, $4, $5, $6)")

    public func taskEvent(id: String) async throws -> TaskEvent? {
        try await rows("SELECT \(unsafeRaw: Self.taskEventColumns) FROM task_events WHERE id = \(bind: id)").first.map(Self.decodeTaskEvent)
    }

    /// Up to `limit` of the task's events (of `agentId` when given) with a `sequence_id` above `afterSequence`,
    /// in `sequence_id` order.
    public func taskEvents(taskId: String, agentId: String?, afterSequence: Int64, limit: Int) async throws -> [TaskEvent] {
        let agent: SQLQueryString = agentId.map { " AND agent_id = \(bind: $0)" } ?? ""
        return try await rows("""
            SELECT \(unsafeRaw: Self.taskEventColumns) FROM task_events WHERE task_id = \(bind: taskId)\(agent) \
            AND sequence_id > \(bind: afterSequence) ORDER BY sequence_id LIMIT \(bind: limit)
            """).map(Self.decodeTaskEvent)
    }

    // MARK: Task messages

    static let taskMessageColumns = "id, task_id, content, streaming_status, created_at, updated_at"

    public func insertTaskMessage(_ message: TaskMessage) async throws {
        _ = try await rows(Self.insertTaskMessage, [
            .text(message.id), .text(message.taskId), .text(JSONCodec.string(message.content)),
            .text(message.streamingStatus?.rawValue), .time(message.createdAt), .time(message.updatedAt),
        ])
    }

    private static let insertTaskMessage = Statement(
        "INSERT INTO task_messages (\(taskMessageColumns)) VALUES ($1, $2, $3, $4, $5, $6)")

    /// Writes content, streaming_status and updated_at (a message never changes task).
    public func updateTaskMessage(_ message: TaskMessage) async throws {
        try await run("""
            UPDATE task_messages SET content = \(bind: JSONCodec.string(message.content)), \
            streaming_status = \(bind: message.streamingStatus?.rawValue), updated_at = \(bind: message.updatedAt.microseconds) \
            WHERE id = \(bind: message.id)
            """)
    }

    public func taskMessage(id: String) async throws -> TaskMessage? {
        try await rows("SELECT \(unsafeRaw: Self.taskMessageColumns) FROM task_messages WHERE id = \(bind: id)").first.map(Self.decodeTaskMessage)
    }

    /// The task's messages; the default page is the first 1000 in insertion order. `page.orderBy` may be
    /// `seq` (insertion order), `created_at` or `updated_at`; ties follow insertion order.
    public func taskMessages(
        taskId: String, page: Page = Page(limit: 1000, orderBy: "seq", direction: .asc)
    ) async throws -> [TaskMessage] {
        try await rows("""
            SELECT \(unsafeRaw: Self.taskMessageColumns) FROM task_messages WHERE task_id = \(bind: taskId) \
            \(unsafeRaw: taskOrderClause(page)) LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
            """).map(Self.decodeTaskMessage)
    }

    // MARK: States

    static let taskStateColumns = "id, task_id, agent_id, state, created_at, updated_at"

    /// Inserts `state` unless its task and agent have one; returns whether it was inserted.
    public func insertTaskStateIfAbsent(_ state: TaskState) async throws -> Bool {
        let inserted = try await rows("""
            INSERT INTO task_states (\(unsafeRaw: Self.taskStateColumns)) VALUES (\(bind: state.id), \(bind: state.taskId), \
            \(bind: state.agentId), \(bind: JSONCodec.string(.object(state.state))), \(bind: state.createdAt.microseconds), \
            \(bind: state.updatedAt.microseconds)) ON CONFLICT (task_id, agent_id) DO NOTHING RETURNING id
            """)
        return !inserted.isEmpty
    }

    public func taskState(id: String, lock: Bool = false) async throws -> TaskState? {
        try await rows("""
            SELECT \(unsafeRaw: Self.taskStateColumns) FROM task_states WHERE id = \(bind: id)\(unsafeRaw: lock ? dialect.forUpdate : "")
            """).first.map(Self.decodeTaskState)
    }

    /// States filtered by task and agent (either may be nil: no filter).
    public func listTaskStates(taskId: String?, agentId: String?, page: Page) async throws -> [TaskState] {
        var condition: SQLQueryString = "1 = 1"
        if let taskId { condition.appendInterpolation(" AND task_id = \(bind: taskId)" as SQLQueryString) }
        if let agentId { condition.appendInterpolation(" AND agent_id = \(bind: agentId)" as SQLQueryString) }
        return try await rows("""
            SELECT \(unsafeRaw: Self.taskStateColumns) FROM task_states WHERE \(condition) \
            \(unsafeRaw: taskOrderClause(page)) LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
            """).map(Self.decodeTaskState)
    }

    /// Writes the state object and updated_at.
    public func updateTaskState(_ state: TaskState) async throws {
        try await run("""
            UPDATE task_states SET state = \(bind: JSONCodec.string(.object(state.state))), \
            updated_at = \(bind: state.updatedAt.microseconds) WHERE id = \(bind: state.id)
            """)
    }

    public func deleteTaskState(id: String) async throws {
        try await run("DELETE FROM task_states WHERE id = \(bind: id)")
    }

    // MARK: Trackers

    static let taskTrackerColumns = """
        id, agent_id, task_id, last_processed_event_id, status, status_reason, created_at, updated_at
        """

    public func taskTracker(id: String, lock: Bool = false) async throws -> TaskTracker? {
        try await rows("""
            SELECT \(unsafeRaw: Self.taskTrackerColumns) FROM task_trackers WHERE id = \(bind: id)\(unsafeRaw: lock ? dialect.forUpdate : "")
            """).first.map(Self.decodeTaskTracker)
    }

    /// Trackers filtered by agent and task (either may be nil: no filter).
    public func listTaskTrackers(agentId: String?, taskId: String?, page: Page) async throws -> [TaskTracker] {
        var condition: SQLQueryString = "1 = 1"
        if let agentId { condition.appendInterpolation(" AND agent_id = \(bind: agentId)" as SQLQueryString) }
        if let taskId { condition.appendInterpolation(" AND task_id = \(bind: taskId)" as SQLQueryString) }
        return try await rows("""
            SELECT \(unsafeRaw: Self.taskTrackerColumns) FROM task_trackers WHERE \(condition) \
            \(unsafeRaw: taskOrderClause(page)) LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
            """).map(Self.decodeTaskTracker)
    }

    /// Writes last_processed_event_id, status, status_reason and updated_at.
    public func updateTaskTracker(_ tracker: TaskTracker) async throws {
        try await run("""
            UPDATE task_trackers SET last_processed_event_id = \(bind: tracker.lastProcessedEventId), \
            status = \(bind: tracker.status), status_reason = \(bind: tracker.statusReason), \
            updated_at = \(bind: tracker.updatedAt.microseconds) WHERE id = \(bind: tracker.id)
            """)
    }

    // MARK: Spans

    static let spanColumns = "id, trace_id, parent_id, name, start_time, end_time, input, output, data, task_id, agent_id"

    /// Inserts `span` unless its id exists; returns whether it was inserted.
    public func insertSpanIfAbsent(_ span: Span) async throws -> Bool {
        let inserted = try await rows("""
            INSERT INTO spans (\(unsafeRaw: Self.spanColumns)) VALUES (\(bind: span.id), \(bind: span.traceId), \
            \(bind: span.parentId), \(bind: span.name), \(bind: span.startTime.microseconds), \
            \(bind: span.endTime?.microseconds), \(bind: span.input.map(JSONCodec.string)), \
            \(bind: span.output.map(JSONCodec.string)), \(bind: span.data.map(JSONCodec.string)), \(bind: span.taskId), \
            \(bind: span.agentId)) ON CONFLICT (id) DO NOTHING RETURNING id
            """)
        return !inserted.isEmpty
    }

    public func span(id: String, lock: Bool = false) async throws -> Span? {
        try await rows("""
            SELECT \(unsafeRaw: Self.spanColumns) FROM spans WHERE id = \(bind: id)\(unsafeRaw: lock ? dialect.forUpdate : "")
            """).first.map(Self.decodeSpan)
    }

    /// Writes every field but id and agent_id.
    public func updateSpan(_ span: Span) async throws {
        try await run("""
            UPDATE spans SET trace_id = \(bind: span.traceId), parent_id = \(bind: span.parentId), name = \(bind: span.name), \
            start_time = \(bind: span.startTime.microseconds), end_time = \(bind: span.endTime?.microseconds), \
            input = \(bind: span.input.map(JSONCodec.string)), output = \(bind: span.output.map(JSONCodec.string)), \
            data = \(bind: span.data.map(JSONCodec.string)), task_id = \(bind: span.taskId) WHERE id = \(bind: span.id)
            """)
    }

    /// Spans filtered by trace and task; with `visibleTo`, only those that agent wrote or that belong to
    /// one of its tasks.
    public func listSpans(traceId: String?, taskId: String?, visibleTo agentId: String?, page: Page) async throws -> [Span] {
        var condition: SQLQueryString = "1 = 1"
        if let traceId { condition.appendInterpolation(" AND trace_id = \(bind: traceId)" as SQLQueryString) }
        if let taskId { condition.appendInterpolation(" AND task_id = \(bind: taskId)" as SQLQueryString) }
        if let agentId {
            condition.appendInterpolation("""
                 AND (agent_id = \(bind: agentId) OR task_id IN (SELECT id FROM tasks WHERE agent_id = \(bind: agentId)))
                """ as SQLQueryString)
        }
        return try await rows("""
            SELECT \(unsafeRaw: Self.spanColumns) FROM spans WHERE \(condition) \
            \(unsafeRaw: taskOrderClause(page)) LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
            """).map(Self.decodeSpan)
    }

    // MARK: Helpers

    /// `page.orderBy` is checked against the known columns by the API; nulls sort last, insertion order
    /// breaks ties.
    private func taskOrderClause(_ page: Page) -> String {
        let dir = page.direction == .asc ? "ASC" : "DESC"
        let column = page.orderBy.allSatisfy { $0.isLetter || $0 == "_" } ? page.orderBy : "seq"
        if column == "seq" { return "ORDER BY seq \(dir)" }
        return "ORDER BY CASE WHEN \(column) IS NULL THEN 1 ELSE 0 END, \(column) \(dir), seq \(dir)"
    }

    static func decodeJSON(_ text: String?) throws -> JSONValue? {
        guard let text else { return nil }
        return try JSONCodec.parse(text)
    }

    /// Each decoder reads its table's column list, in its order.
    static func decodeTask(_ row: Row) throws -> AgentTask {
        var r = row.reader
        return try readTask(&r)
    }

    static func readTask(_ r: inout RowReader) throws -> AgentTask {
        AgentTask(
            id: try r.text(), agentId: try r.text(), deploymentId: try r.optionalText(), name: try r.optionalText(),
            status: TaskStatus(rawValue: try r.text()) ?? .running, statusReason: try r.optionalText(),
            params: try decodeObject(r.optionalText()), taskMetadata: try decodeObject(r.optionalText()),
            createdAt: try r.time(), updatedAt: try r.time())
    }

    static func decodeTaskEvent(_ row: Row) throws -> TaskEvent {
        var r = row.reader
        return TaskEvent(
            id: try r.text(), taskId: try r.text(), agentId: try r.text(), sequenceId: try r.int(),
            content: try decodeJSON(r.optionalText()), createdAt: try r.time())
    }

    static func decodeTaskMessage(_ row: Row) throws -> TaskMessage {
        var r = row.reader
        return TaskMessage(
            id: try r.text(), taskId: try r.text(), content: try decodeJSON(r.text()) ?? .null,
            streamingStatus: try r.optionalText().flatMap(StreamingStatus.init), createdAt: try r.time(),
            updatedAt: try r.time())
    }

    static func decodeTaskState(_ row: Row) throws -> TaskState {
        var r = row.reader
        return TaskState(
            id: try r.text(), taskId: try r.text(), agentId: try r.text(), state: try decodeObject(r.text()) ?? [:],
            createdAt: try r.time(), updatedAt: try r.time())
    }

    static func decodeTaskTracker(_ row: Row) throws -> TaskTracker {
        var r = row.reader
        return TaskTracker(
            id: try r.text(), agentId: try r.text(), taskId: try r.text(), lastProcessedEventId: try r.optionalText(),
            status: try r.optionalText(), statusReason: try r.optionalText(), createdAt: try r.time(),
            updatedAt: try r.time())
    }

    static func decodeSpan(_ row: Row) throws -> Span {
        var r = row.reader
        return Span(
            id: try r.text(), traceId: try r.text(), parentId: try r.optionalText(), name: try r.text(),
            startTime: try r.time(), endTime: try r.optionalTime(), input: try decodeJSON(r.optionalText()),
            output: try decodeJSON(r.optionalText()), data: try decodeJSON(r.optionalText()),
            taskId: try r.optionalText(), agentId: try r.optionalText())
    }

    /// Per deployment of the agent, when its RUNNING tasks were last active (retention's task drain).
    public func runningTaskActivity(agentId: String) async throws -> [String: Timestamp] {
        let active = try await rows("""
            SELECT deployment_id, MAX(updated_at) AS active FROM tasks \
            WHERE agent_id = \(bind: agentId) AND status = 'RUNNING' AND deployment_id IS NOT NULL GROUP BY deployment_id
            """)
        var activity: [String: Timestamp] = [:]
        for row in active {
            var r = row.reader
            activity[try r.text()] = try r.time()
        }
        return activity
    }
}
