/// The task methods of the `/rpc` routes: what the client's `params` ask for, checked before anything is
/// written or forwarded (the shapes of Agentex's `AgentRPCRequest`).
public enum TaskMethod: String, Sendable, CaseIterable {
    case create = "task/create"
    case messageSend = "message/send"
    case eventSend = "event/send"
    case cancel = "task/cancel"
    case interrupt = "task/interrupt"
}

public struct TaskCall: Sendable, Equatable {
    public enum TaskRef: Sendable, Equatable {
        case id(String)
        case name(String)
    }

    public var method: TaskMethod
    /// The task the call names; for `task/create` and `message/send` it may be absent (a new task).
    public var task: TaskRef?
    /// `task/create`: the new task's name (a task of that name is reused).
    public var name: String?
    /// `task/create`'s `params`, `message/send`'s `task_params`: the task's parameters.
    public var params: [String: JSONValue]?
    public var taskMetadata: [String: JSONValue]?
    /// `message/send` (required) and `event/send` (optional): a TaskMessageContent object.
    public var content: [String: JSONValue]?
    /// `message/send`: stream the agent's answer line by line.
    public var stream: Bool = false

    public static func parse(_ method: TaskMethod, params: [String: JSONValue]) throws(JSONRPC.Failure) -> TaskCall {
        var call = TaskCall(method: method)
        func fail(_ message: String) -> JSONRPC.Failure { JSONRPC.Failure(.invalidParams, 400, message) }
        func string(_ key: String) throws(JSONRPC.Failure) -> String? {
            switch params[key] {
            case nil, .null?: return nil
            case .string(let s)?:
                if s.isEmpty { throw fail("params.\(key) must not be empty") }
                if let problem = Rules.nulProblem(s) { throw fail("params.\(key) \(problem)") }
                return s
            default: throw fail("params.\(key) must be a string")
            }
        }
        func object(_ key: String) throws(JSONRPC.Failure) -> [String: JSONValue]? {
            switch params[key] {
            case nil, .null?: return nil
            case .object(let o)?:
                // Stored with the task, under the limit the platform routes hold them to.
                if key != "content", JSONCodec.serialize(.object(o)).count > Rules.maxMetadataBytes {
                    throw fail("params.\(key) is larger than \(Rules.maxMetadataBytes / 1024) KiB")
                }
                return o
            default: throw fail("params.\(key) must be an object")
            }
        }

        if method == .create {
            call.name = try string("name")
            call.params = try object("params")
            call.taskMetadata = try object("task_metadata")
            return call
        }
        let id = try string("task_id")
        let name = try string("task_name")
        switch (id, name) {
        case (let id?, nil): call.task = .id(id)
        case (nil, let name?): call.task = .name(name)
        case (nil, nil):
            if method != .messageSend { throw fail("\(method.rawValue) needs params.task_id or params.task_name") }
        case (.some, .some): throw fail("give params.task_id or params.task_name, not both")
        }
        switch method {
        case .messageSend:
            guard let content = try object("content") else { throw fail("message/send needs params.content, a message content object") }
            try checkContent(content, fail)
            call.content = content
            call.params = try object("task_params")
            switch params["stream"] {
            case nil, .null?: call.stream = false
            case .bool(let b)?: call.stream = b
            default: throw fail("params.stream must be true or false")
            }
        case .eventSend:
            if let content = try object("content") {
                try checkContent(content, fail)
                call.content = content
            }
        case .create, .cancel, .interrupt:
            break
        }
        return call
    }

    /// A TaskMessageContent names its kind in `type`; the kinds' own fields are the agent's business.
    private static func checkContent(
        _ content: [String: JSONValue], _ fail: (String) -> JSONRPC.Failure
    ) throws(JSONRPC.Failure) {
        guard let type = content["type"]?.stringValue, !type.isEmpty else {
            throw fail("params.content.type is required (text, data, tool_request, tool_response, reasoning)")
        }
    }

    init(method: TaskMethod) { self.method = method }
}
