import CutoverCore
import CutoverStore
import Synchronization

/// Where an agent's RPCs go: its production deployment, else its legacy URL, else nowhere.
public struct AgentRoute: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case deployment(id: String, url: String)
        case legacy(url: String)
        case none
    }

    public var agentId: String
    public var name: String
    public var acpType: ACPType
    public var apiKey: String
    public var isDeleted: Bool
    public var target: Target
}

/// A preview target: one deployment of one agent.
public struct DeploymentRoute: Sendable, Equatable {
    public var agent: AgentRoute
    public var deploymentId: String
    public var status: DeploymentStatus
    public var isDeleted: Bool
    public var url: String?
}

/// The per-replica route cache: a hit costs no database query. Every committed change invalidates the
/// agent's entries synchronously, before the committing request answers, so the replica that promoted
/// routes its very next request to the new deployment.
public final class RouteTable: Sendable {
    private struct State {
        var agents: [String: AgentRoute] = [:]
        var names: [String: String] = [:]
        var deployments: [String: DeploymentRoute] = [:]
        /// Bumped by every invalidation: a lookup that raced with one does not cache what it read.
        var generation: UInt64 = 0
        var loads = 0
    }

    private let state = Mutex(State())
    private let store: any Store

    public init(store: any Store) {
        self.store = store
        store.changes.addListener { [weak self] changes in self?.invalidate(changes) }
    }

    func invalidate(_ changes: [Change]) {
        state.withLock { s in
            s.generation &+= 1
            for change in changes {
                if let route = s.agents.removeValue(forKey: change.agentId) { s.names[route.name] = nil }
                s.deployments = s.deployments.filter { $0.value.agent.agentId != change.agentId }
            }
        }
    }

    /// Forgets every route: after missed change notifications, nothing cached can be trusted.
    public func invalidateAll() {
        state.withLock { s in
            s.generation &+= 1
            s.agents.removeAll()
            s.names.removeAll()
            s.deployments.removeAll()
        }
    }

    /// How many lookups went to the database (cache misses).
    public var loads: Int { state.withLock { $0.loads } }

    public func route(agentId: String) async throws -> AgentRoute? {
        if let hit = state.withLock({ $0.agents[agentId] }) { return hit }
        return try await load { tx in try await tx.agent(id: agentId) }
    }

    public func route(agentName: String) async throws -> AgentRoute? {
        if let hit = state.withLock({ s in s.names[agentName].flatMap { s.agents[$0] } }) { return hit }
        return try await load { tx in try await tx.agent(name: agentName) }
    }

    public func route(agentId: String, deploymentId: String) async throws -> DeploymentRoute? {
        if let hit = state.withLock({ $0.deployments[deploymentId] }), hit.agent.agentId == agentId { return hit }
        let generation = state.withLock { s in
            s.loads += 1
            return s.generation
        }
        guard let agent = try await route(agentId: agentId) else { return nil }
        guard let d = try await store.read({ try await $0.deployment(id: deploymentId) }), d.agentId == agentId else {
            return nil
        }
        let route = DeploymentRoute(
            agent: agent, deploymentId: d.id, status: d.status, isDeleted: d.isDeleted, url: d.acpURL)
        state.withLock { s in if s.generation == generation { s.deployments[d.id] = route } }
        return route
    }

    private func load(_ find: @escaping @Sendable (StoreTransaction) async throws -> Agent?) async throws -> AgentRoute? {
        let generation = state.withLock { s in
            s.loads += 1
            return s.generation
        }
        let route: AgentRoute? = try await store.read { tx in
            guard let agent = try await find(tx) else { return nil }
            var target = AgentRoute.Target.none
            if let productionId = agent.productionDeploymentId,
                let production = try await tx.deployment(id: productionId), let url = production.acpURL
            {
                target = .deployment(id: production.id, url: url)
            } else if let legacy = agent.acpURL {
                target = .legacy(url: legacy)
            }
            return AgentRoute(
                agentId: agent.id, name: agent.name, acpType: agent.acpType, apiKey: agent.apiKey,
                isDeleted: agent.status == .deleted, target: target)
        }
        if let route {
            state.withLock { s in
                guard s.generation == generation else { return }
                s.agents[route.agentId] = route
                s.names[route.name] = route.agentId
            }
        }
        return route
    }
}
