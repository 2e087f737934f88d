import CutoverCore
import Hummingbird

/// Who a request authenticated as.
public enum Principal: Sendable, Equatable {
    /// An admin token, or any caller when Cutover runs open on loopback.
    case admin
    /// An agent API key: scoped to that agent.
    case agent(String)

    var actor: Actor {
        switch self {
        case .admin: .admin
        case .agent(let id): .agent(id)
        }
    }
}

public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?

    public init(source: Source) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { APILimits.controlBody }
}

enum APILimits {
    static let controlBody = 1 << 20
}
