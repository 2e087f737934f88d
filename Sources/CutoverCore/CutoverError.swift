/// One rejected field of a request, as listed in `data.errors` of a 422 answer.
public struct FieldProblem: Sendable, Equatable {
    public var field: String
    public var problem: String
    public init(field: String, problem: String) {
        self.field = field
        self.problem = problem
    }
}

/// The errors the product answers with; each maps to one HTTP status.
public enum CutoverError: Error, Sendable, Equatable {
    case malformed(String)
    case validation([FieldProblem])
    case notFound(String)
    case conflict(String)
    case gone(String)
    case unauthorized(String)
    case forbidden(String)
    case payloadTooLarge(String)
    case unavailable(String)

    public var status: Int {
        switch self {
        case .malformed: 400
        case .validation: 422
        case .notFound: 404
        case .conflict: 409
        case .gone: 410
        case .unauthorized: 401
        case .forbidden: 403
        case .payloadTooLarge: 413
        case .unavailable: 503
        }
    }

    public var message: String {
        switch self {
        case .validation(let problems):
            let list = problems.map { "\($0.field): \($0.problem)" }.joined(separator: "; ")
            return "invalid request: \(list)"
        case .malformed(let m), .notFound(let m), .conflict(let m), .gone(let m), .unauthorized(let m),
            .forbidden(let m), .payloadTooLarge(let m), .unavailable(let m):
            return m
        }
    }

    public static func invalid(_ field: String, _ problem: String) -> CutoverError {
        .validation([FieldProblem(field: field, problem: problem)])
    }

    public static func agentNotFound(_ ref: String) -> CutoverError { .notFound("agent '\(ref)' not found") }

    public static func deploymentNotFound(_ id: String, agent: String) -> CutoverError {
        .notFound("deployment '\(id)' not found for agent '\(agent)'")
    }
}
