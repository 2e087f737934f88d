import CutoverCore
import CutoverStore
import Hummingbird

/// `/tasks`: the platform API's task routes (get, by name, list, update, delete, status transitions), as
/// agentex-client calls them. An agent key sees only its own agent's tasks; anything else is 404.
struct TaskRoutes {
    let deps: APIDependencies
    static let orderable = ["created_at", "updated_at", "name", "status"]
    /// `POST /tasks/{id}/<verb>` and the status each one sets.
    static let transitions: [(verb: String, status: TaskStatus, done: String)] = [
        ("cancel", .canceled, "canceled"), ("complete", .completed, "completed"), ("fail", .failed, "failed"),
        ("interrupt", .interrupted, "interrupted"), ("terminate", .terminated, "terminated"),
        ("timeout", .timedOut, "timed out"),
    ]

    func register(on router: Router<APIRequestContext>) {
        router.get("/tasks") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            let query = QueryInput(request)
            let page = try query.page(orderable: Self.orderable)
            let agentId = try query.text("agent_id")
            let agentName = try query.text("agent_name")
            let status = try query.text("status").map { text -> TaskStatus in
                guard let status = TaskStatus(rawValue: text) else {
                    throw CutoverError.invalid(
                        "status", "must be one of \(TaskStatus.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return status
            }
            let withAgents = try Self.relationships(query)
            if query.parameters["task_metadata"] != nil {
                throw CutoverError.invalid("task_metadata", "filtering by task_metadata is not supported")
            }
            let tasks: [AgentTask] = try await deps.store.read { tx in
                var filter = TaskFilter(agentId: agentId, status: status)
                if let agentName {
                    guard let agent = try await tx.agent(name: agentName) else { return [] }
                    if let agentId, agentId != agent.id { return [] }
                    filter.agentId = agent.id
                }
                guard let scope = principal.listFilter(filter.agentId) else { return [] }
                filter.agentId = scope.agentId
                return try await tx.listTasks(filter, page: page)
            }
            let agents = withAgents ? try await Self.agents(of: tasks, deps.store) : [:]
            return Wire.response(bytes: JSONObjectWriter.array(tasks) {
                TaskWire.task($0, agents: withAgents ? agents[$0.agentId].map { [$0] } ?? [] : nil, includeParams: false, into: &$1)
            })
        }
        router.get("/tasks/name/:name") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let name = try context.parameters.require("name")
            let withAgents = try Self.relationships(QueryInput(request))
            let task = try await deps.store.read { try await TaskAccess.task($0, name: name, principal) }
            return try await Self.answer(task, withAgents: withAgents, deps.store)
        }
        router.get("/tasks/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            let withAgents = try Self.relationships(QueryInput(request))
            let task = try await deps.store.read { try await TaskAccess.task($0, id: id, principal) }
            return try await Self.answer(task, withAgents: withAgents, deps.store)
        }
        router.put("/tasks/name/:name") { request, context in
            try await update(request, .name(try context.parameters.require("name")))
        }
        router.put("/tasks/:id") { request, context in
            try await update(request, .id(try context.parameters.require("id")))
        }
        router.delete("/tasks/name/:name") { request, context in
            try await delete(request, .name(try context.parameters.require("name")))
        }
        router.delete("/tasks/:id") { request, context in
            try await delete(request, .id(try context.parameters.require("id")))
        }
        for transition in Self.transitions {
            router.post("/tasks/:id/\(transition.verb)") { request, context in
                let principal = try await deps.authenticator.principal(request)
                let id = try context.parameters.require("id")
                var body = try await BodyFields.read(request, allowEmpty: true)
                let reason = body.string("reason") { Rules.shortTextProblem($0, max: Rules.maxDescriptionBytes) }
                try body.check()
                let task = try await deps.store.transaction { tx in
                    var task = try await TaskAccess.task(tx, id: id, principal, lock: true)
                    let from = task.status
                    guard from == .running || (from == .interrupted && transition.status != .interrupted) else {
                        throw CutoverError.conflict(
                            "task '\(id)' is \(from.rawValue): only a RUNNING\(transition.status == .interrupted ? "" : " or INTERRUPTED") task can be \(transition.done)")
                    }
                    task.status = transition.status
                    task.statusReason = reason ?? "Task \(transition.done)"
                    task.updatedAt = Timestamp.now()
                    try await tx.updateTask(task)
                    return task
                }
                return Wire.response(task)
            }
        }
    }

    func update(_ request: Request, _ ref: TaskRef) async throws -> Response {
        let principal = try await deps.authenticator.principal(request)
        var body = try await BodyFields.read(request)
        let replacesMetadata = body.object["task_metadata"] != nil
        let metadata = body.metadata("task_metadata")
        let merge = body.metadata("merge_params")
        try body.check()
        let task = try await deps.store.transaction { tx in
            var task = try await TaskAccess.task(tx, ref, principal, lock: true)
            if replacesMetadata { task.taskMetadata = metadata }
            if let merge {
                let merged = (task.params ?? [:]).merging(merge) { _, new in new }
                if JSONCodec.serialize(.object(merged)).count > Rules.maxMetadataBytes {
                    throw CutoverError.invalid("merge_params", "the merged params must be at most 64 KiB of JSON")
                }
                task.params = merged
            }
            task.updatedAt = Timestamp.now()
            try await tx.updateTask(task)
            return task
        }
        return Wire.response(task)
    }

    func delete(_ request: Request, _ ref: TaskRef) async throws -> Response {
        let principal = try await deps.authenticator.principal(request)
        let task = try await deps.store.transaction { tx in
            var task = try await TaskAccess.task(tx, ref, principal, lock: true)
            if task.status != .deleted {
                task.status = .deleted
                task.statusReason = "Task deleted"
                task.updatedAt = Timestamp.now()
                try await tx.updateTask(task)
            }
            return task
        }
        return Wire.response(["id": .string(task.id), "message": .string("task '\(task.name ?? task.id)' deleted")])
    }

    /// Whether `?relationships=agents` asks for the task's agent (the only relationship there is).
    static func relationships(_ query: QueryInput) throws -> Bool {
        guard let text = query.parameters["relationships"] ?? query.parameters["relationships[]"] else { return false }
        let names = text.split(separator: ",").map { String($0).trimmingWhitespace }
        guard names.allSatisfy({ $0 == "agents" }) else {
            throw CutoverError.invalid("relationships", "must be agents")
        }
        return !names.isEmpty
    }

    static func answer(_ task: AgentTask, withAgents: Bool, _ store: any Store) async throws -> Response {
        guard withAgents else { return Wire.response(task) }
        let agents = try await Self.agents(of: [task], store)
        var out: [UInt8] = []
        TaskWire.task(task, agents: agents[task.agentId].map { [$0] } ?? [], into: &out)
        return Wire.response(bytes: out)
    }

    static func agents(of tasks: [AgentTask], _ store: any Store) async throws -> [String: Agent] {
        let ids = Set(tasks.map(\.agentId))
        return try await store.read { tx in
            var agents: [String: Agent] = [:]
            for id in ids { agents[id] = try await tx.agent(id: id) }
            return agents
        }
    }
}

/// A task named in a path: by id or by name.
enum TaskRef: Sendable {
    case id(String)
    case name(String)
}

extension Principal {
    /// The agent an agent key is scoped to; nil for an admin.
    var scopedAgentId: String? {
        if case .agent(let id) = self { return id }
        return nil
    }

    /// The agent a list is filtered by: what the caller asked for, narrowed to its own agent for an agent
    /// key; nil when an agent key asks for another agent's records (the list is empty).
    func listFilter(_ asked: String?) -> AgentFilter? {
        guard let own = scopedAgentId else { return AgentFilter(agentId: asked) }
        if let asked, asked != own { return nil }
        return AgentFilter(agentId: own)
    }

    struct AgentFilter {
        var agentId: String?
    }

    /// Whether the caller may see records of agent `agentId` (an admin sees every agent's).
    func sees(agentId: String?) -> Bool {
        guard let own = scopedAgentId else { return true }
        return own == agentId
    }
}

/// Finds the task records a caller may see; anything else answers 404, as if absent.
enum TaskAccess {
    static func notFound(_ kind: String, _ ref: String) -> CutoverError { .notFound("\(kind) '\(ref)' not found") }

    static func task(_ tx: StoreTransaction, id: String, _ principal: Principal, lock: Bool = false) async throws -> AgentTask {
        guard let task = try await tx.task(id: id, lock: lock), principal.sees(agentId: task.agentId) else {
            throw notFound("task", id)
        }
        return task
    }

    static func task(_ tx: StoreTransaction, name: String, _ principal: Principal, lock: Bool = false) async throws -> AgentTask {
        guard let task = try await tx.task(name: name, lock: lock), principal.sees(agentId: task.agentId) else {
            throw notFound("task", name)
        }
        return task
    }

    static func task(_ tx: StoreTransaction, _ ref: TaskRef, _ principal: Principal, lock: Bool = false) async throws -> AgentTask {
        switch ref {
        case .id(let id): try await task(tx, id: id, principal, lock: lock)
        case .name(let name): try await task(tx, name: name, principal, lock: lock)
        }
    }
}

extension QueryInput {
    /// A query parameter as text: absent (or empty) is nil; NUL is refused (422).
    func text(_ name: String, required: Bool = false) throws -> String? {
        guard let value = parameters[name], !value.isEmpty else {
            if required { throw CutoverError.invalid(name, "is required") }
            return nil
        }
        if let problem = Rules.nulProblem(value) ?? Rules.shortTextProblem(value) {
            throw CutoverError.invalid(name, problem)
        }
        return value
    }

    /// `page(orderable:)` with `defaultOrder` when `order_by` is not given.
    func page(orderable: [String], defaultOrder: String) throws -> Page {
        var page = try page(orderable: orderable)
        if parameters["order_by"] == nil { page.orderBy = defaultOrder }
        return page
    }
}

extension BodyFields {
    /// A JSON object of any size (the body limit bounds it); nil when absent or null.
    mutating func jsonObject(_ key: String, required: Bool = false) -> [String: JSONValue]? {
        guard let value = object[key], !value.isNull else {
            if required { fail(key, "is required") }
            return nil
        }
        guard let object = value.objectValue else {
            fail(key, "must be a JSON object, not \(value.typeName)")
            return nil
        }
        return object
    }

    /// An RFC 3339 date-time; nil when absent or null.
    mutating func timestamp(_ key: String, required: Bool = false) -> Timestamp? {
        guard let text = string(key, required: required) else { return nil }
        guard let time = TimestampParser.parse(text) else {
            fail(key, "must be an RFC 3339 date-time, e.g. 2026-11-28T23:24:14.643562Z")
            return nil
        }
        return time
    }

    /// The content of a task message: a TaskMessageContent object (`type` text, data, tool_request,
    /// tool_response or reasoning, and its `author`).
    mutating func messageContent(_ key: String, value: JSONValue?) -> JSONValue? {
        guard let value, !value.isNull else {
            fail(key, "is required")
            return nil
        }
        guard let content = value.objectValue else {
            fail(key, "must be a JSON object, not \(value.typeName)")
            return nil
        }
        guard let type = content["type"]?.stringValue, Self.contentTypes.contains(type) else {
            fail("\(key).type", "must be one of \(Self.contentTypes.joined(separator: ", "))")
            return nil
        }
        guard content["author"]?.stringValue != nil else {
            fail("\(key).author", "is required (a string such as user or agent)")
            return nil
        }
        return value
    }

    static let contentTypes = ["text", "data", "tool_request", "tool_response", "reasoning"]
}
