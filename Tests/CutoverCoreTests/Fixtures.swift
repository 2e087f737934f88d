import CutoverCore

/// Shared builders for the table-driven tests: small, explicit records with sensible defaults.
enum Fixture {
    /// An arbitrary fixed instant (2023-11-14T22:13:20Z) so every expectation is exact.
    static let t0 = Timestamp(microseconds: 1_700_000_000_000_000)

    static func at(_ offset: Duration) -> Timestamp { t0 + offset }

    static func agent(
        id: String = "agent-1", name: String = "support-bot", status: AgentStatus = .ready,
        productionDeploymentId: String? = nil, acpURL: String? = nil
    ) -> Agent {
        Agent(
            id: id, name: name, description: "", status: status, acpType: .async, createdAt: t0, updatedAt: t0,
            productionDeploymentId: productionDeploymentId, acpURL: acpURL, apiKey: String(repeating: "0", count: 64))
    }

    static func deployment(
        _ id: String, agentId: String = "agent-1", status: DeploymentStatus = .ready, acpURL: String? = nil,
        isProduction: Bool = false, createdAt: Timestamp = t0, promotedAt: Timestamp? = nil,
        demotedAt: Timestamp? = nil, expiresAt: Timestamp? = nil
    ) -> Deployment {
        Deployment(
            id: id, agentId: agentId, dockerImage: "registry.local/\(agentId):\(id)", status: status, acpURL: acpURL,
            isProduction: isProduction, createdAt: createdAt, promotedAt: promotedAt, demotedAt: demotedAt,
            expiresAt: expiresAt)
    }
}

extension CutoverError {
    /// Runs `body` and returns the `CutoverError` it throws, or nil when it returns normally (or throws
    /// anything else, which the callers' `#require` then reports).
    static func caught<T>(_ body: () throws -> T) -> CutoverError? {
        do {
            _ = try body()
            return nil
        } catch {
            return error as? CutoverError
        }
    }
}
