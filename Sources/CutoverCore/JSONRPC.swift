/// The JSON-RPC envelope of the `/rpc` routes and its error codes.
public enum JSONRPC {
    public enum ErrorCode: Int, Sendable {
        case parseError = -32700
        case invalidRequest = -32600
        case methodNotAllowed = -32601
        case invalidParams = -32602
        case notFound = -32004
        case noRoute = -32001
        case deleted = -32002
        case upstreamUnreachable = -32003
        case upstreamTimeout = -32005
        case tooLarge = -32000
    }

    /// A rejected RPC: the JSON-RPC error and the HTTP status it is answered with.
    public struct Failure: Error, Sendable, Equatable {
        public var code: ErrorCode
        public var httpStatus: Int
        public var message: String
        public var data: [String: JSONValue]

        public init(_ code: ErrorCode, _ httpStatus: Int, _ message: String, data: [String: JSONValue] = [:]) {
            self.code = code
            self.httpStatus = httpStatus
            self.message = message
            self.data = data
        }

        public func body(id: JSONValue) -> JSONValue {
            [
                "jsonrpc": "2.0", "id": id,
                "error": ["code": .number(Double(code.rawValue)), "message": .string(message), "data": data.isEmpty ? .null : .object(data)],
            ]
        }
    }

    /// The methods each `acp_type` accepts.
    public static func allowedMethods(_ type: ACPType) -> [String] {
        switch type {
        case .sync: ["message/send", "task/create", "task/interrupt"]
        case .async, .agentic: ["task/create", "task/cancel", "task/interrupt", "event/send"]
        }
    }

    /// A request that passed validation; the body is forwarded exactly as received.
    public struct Request: Sendable, Equatable {
        public var method: String
        public var id: JSONValue
    }

    /// The request `id` when the body is an object with a usable one, for error replies to echo.
    public static func requestId(_ body: JSONValue?) -> JSONValue {
        guard let id = body?.objectValue?["id"] else { return .null }
        switch id {
        case .string, .number: return id
        default: return .null
        }
    }

    /// Validates a parsed body as a JSON-RPC 2.0 request: `method` and `params` (object) required,
    /// `jsonrpc` "2.0" when present, `id` a string, number or null when present.
    public static func validate(_ body: JSONValue) throws(Failure) -> Request {
        guard let object = body.objectValue else {
            throw Failure(.invalidRequest, 400, "a JSON-RPC request must be a JSON object, not \(body.typeName)")
        }
        if let version = object["jsonrpc"], version != .string("2.0") {
            throw Failure(.invalidRequest, 400, "jsonrpc must be \"2.0\"")
        }
        let id = object["id"] ?? .null
        switch id {
        case .string, .number, .null: break
        default: throw Failure(.invalidRequest, 400, "id must be a string, a number or null")
        }
        guard let method = object["method"]?.stringValue, !method.isEmpty else {
            throw Failure(.invalidRequest, 400, "method is required and must be a non-empty string")
        }
        guard case .object? = object["params"] else {
            throw Failure(.invalidRequest, 400, "params is required and must be a JSON object")
        }
        return Request(method: method, id: id)
    }

    /// Checks `method` against the agent's `acp_type`; `data` names the agent and deployment in the error.
    public static func authorize(_ request: Request, acpType: ACPType, data: [String: JSONValue]) throws(Failure) {
        let allowed = allowedMethods(acpType)
        guard allowed.contains(request.method) else {
            throw Failure(
                .methodNotAllowed, 400,
                "method '\(request.method)' is not allowed for \(acpType.rawValue) agents; allowed: \(allowed.joined(separator: ", "))",
                data: data)
        }
    }
}
