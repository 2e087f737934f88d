import CutoverCore
import CutoverStore
import HTTPTypes
import Hummingbird

/// The tokens of the security model. With none configured, every caller is admin (allowed on loopback only;
/// `cutover serve` refuses otherwise).
public struct AuthSettings: Sendable {
    public var adminTokens: [String]
    public var registrationTokens: [String]

    public init(adminTokens: [String] = [], registrationTokens: [String] = []) {
        self.adminTokens = adminTokens
        self.registrationTokens = registrationTokens
    }

    public var isOpen: Bool { adminTokens.isEmpty && registrationTokens.isEmpty }
}

struct Authenticator: Sendable {
    let settings: AuthSettings
    let store: any Store

    static func bearer(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }

    static func matches(_ token: String, _ tokens: [String]) -> Bool {
        // Every token is compared, so the time taken does not tell which one nearly matched.
        tokens.reduce(false) { found, candidate in constantTimeEquals(token, candidate) || found }
    }

    /// The caller of a control route; throws 401 when credentials are missing or wrong.
    func principal(_ request: Request) async throws -> Principal {
        if settings.isOpen { return .admin }
        if let token = Self.bearer(request), Self.matches(token, settings.adminTokens) { return .admin }
        if let key = request.headers[.agentAPIKey], key.count >= 16 {
            let candidates = try await store.read { try await $0.agents(apiKeyLookup: Identifiers.apiKeyLookup(key)) }
            if let agent = candidates.first(where: { constantTimeEquals($0.apiKey, key) }) { return .agent(agent.id) }
        }
        throw CutoverError.unauthorized(
            "missing or invalid credentials: send 'Authorization: Bearer <admin token>' or 'x-agent-api-key: <agent key>'")
    }

    /// Registration is open unless registration tokens are configured; then it takes one of them or an admin
    /// token, as a bearer token or in `x-agent-api-key`: a stock agentex-sdk pod sends its `AGENT_API_KEY`
    /// there and never sends `Authorization`.
    func authorizeRegistration(_ request: Request) throws {
        guard !settings.registrationTokens.isEmpty else { return }
        for token in [Self.bearer(request), request.headers[.agentAPIKey]].compactMap({ $0 })
        where Self.matches(token, settings.registrationTokens) || Self.matches(token, settings.adminTokens) {
            return
        }
        throw CutoverError.unauthorized(
            "registration requires a registration token, as 'Authorization: Bearer <token>' or 'x-agent-api-key: <token>' (an admin token works too)")
    }
}

extension Principal {
    /// Agents see only themselves: anything else is "not found" rather than "forbidden", naming only `ref`,
    /// what the caller sent (an agent key must not learn another agent's id from a name).
    func requireVisible(_ agent: Agent, ref: String) throws {
        if case .agent(let id) = self, id != agent.id { throw CutoverError.agentNotFound(ref) }
    }

    /// Admin-only actions on an agent the caller may see: 403 for the agent's own key.
    func requireAdmin(action: String) throws {
        if case .agent = self {
            throw CutoverError.forbidden("an agent API key cannot \(action); use an admin token")
        }
    }
}
