import CutoverCore
import CutoverRuntime
import CutoverStore
import Logging

/// Takes each deployment from `Pending` to `Ready` or `Failed`: reads it, probes its pod when the
/// decision needs it, and writes the plan `Reconcile.plan` returns, deciding again on the locked rows so a
/// stale read (deleted, already ready, re-registered) changes nothing. Deployments that pile up in the
/// queue are reconciled in batches that share the read and the transaction.
public struct DeploymentReconciler: Reconciler {
    public let name = "deployment"
    let store: any Store
    let policy: ReconcilePolicy
    let prober: any ReadinessProber
    let clock: any ControllerClock
    let logger: Logger

    public init(
        store: any Store, policy: ReconcilePolicy, prober: any ReadinessProber, clock: any ControllerClock,
        logger: Logger
    ) {
        self.store = store
        self.policy = policy
        self.prober = prober
        self.clock = clock
        self.logger = logger
    }

    public func watch() -> AsyncStream<String> {
        store.changes.keys { $0.needsReconcile ? $0.deploymentId : nil }
    }

    public func resyncKeys() async throws -> [String] {
        try await store.read { try await $0.pendingDeploymentIds() }
    }

    public func reconcile(_ id: String) async throws -> Requeue {
        try await reconcile(batch: [id])[0].get()
    }

    /// Under a storm of registrations the ready keys pile up; a batch shares the read and the one
    /// transaction among up to this many deployments.
    public var batchLimit: Int { 32 }

    /// Reconciles `ids` together: one read of them all, their probes concurrently, then one transaction
    /// for those that write, which locks their agents, then the deployments, each in id order, and plans
    /// each deployment again on the locked rows in the order given. An auto-promotion updates the agent the
    /// next plan of the same agent sees, so two deployments of one agent never both take production. A
    /// failed transaction fails every key that wrote; the others keep their results.
    public func reconcile(batch ids: [String]) async -> [Result<Requeue, any Error>] {
        let read: [String: (Deployment, Agent)]
        do {
            read = try await store.read { try await $0.deploymentsAndAgents(ids: ids) }
        } catch {
            return ids.map { _ in .failure(error) }
        }
        let probes = await probe(ids.compactMap { read[$0]?.0 })
        var results: [String: Result<Requeue, any Error>] = [:]
        var writing: [String] = []
        for id in ids {
            guard let (deployment, agent) = read[id] else {
                results[id] = .success(.done)
                continue
            }
            let draft = Reconcile.plan(deployment, agent: agent, probe: probes[id], now: clock.now(), policy: policy)
            // Nothing to write (no transition, the pending hint already recorded): no transaction.
            if draft.writesNothing { results[id] = .success(draft.requeue) } else { writing.append(id) }
        }
        guard !writing.isEmpty else { return ids.map { results[$0]! } }
        do {
            let agentIds = Set(writing.compactMap { read[$0]?.0.agentId })
            let plans = try await store.transaction { [clock, policy, writing] tx -> [(ReconcilePlan, Deployment?)] in
                let locked = try await tx.lockAgentsAndDeployments(
                    agentIds: agentIds, deploymentIds: Set(writing), production: false)
                var agents = locked.agents
                let now = clock.now()
                var plans: [(ReconcilePlan, Deployment?)] = []
                for id in writing {
                    guard let deployment = locked.deployments[id], let agent = agents[deployment.agentId] else {
                        plans.append((ReconcilePlan(requeue: .done), nil))
                        continue
                    }
                    let plan = Reconcile.plan(deployment, agent: agent, probe: probes[id], now: now, policy: policy)
                    try await tx.write(plan, agentId: agent.id, actor: .controller, at: now)
                    if let promoted = plan.agent { agents[promoted.id] = promoted }
                    plans.append((plan, plan.deployment))
                }
                return plans
            }
            for (id, (plan, written)) in zip(writing, plans) {
                results[id] = .success(plan.requeue)
                if plan.agent != nil { ControllerMetrics.promotions(.autoPromote).increment() }
                if let written, let before = read[id]?.0, written.status != before.status { log(written) }
            }
        } catch {
            for id in writing { results[id] = .failure(error) }
        }
        return ids.map { results[$0]! }
    }

    /// Probes, concurrently, each deployment whose decision needs a fresh probe; by deployment id.
    private func probe(_ deployments: [Deployment]) async -> [String: ProbeObservation] {
        let now = clock.now()
        let due = deployments.compactMap { d in Reconcile.probeURL(d, now: now, policy: policy).map { (d, $0) } }
        return await withTaskGroup(of: (String, ProbeObservation).self) { group in
            for (deployment, url) in due {
                group.addTask { [prober] in
                    (deployment.id, ProbeObservation(of: deployment, outcome: await prober.probe(url)))
                }
            }
            var observations: [String: ProbeObservation] = [:]
            for await (id, observation) in group { observations[id] = observation }
            return observations
        }
    }

    private func log(_ written: Deployment) {
        var metadata: Logger.Metadata = [
            "agent": "\(written.agentId)", "deployment": "\(written.id)", "status": "\(written.status.rawValue)",
        ]
        if written.status == .failed { metadata["reason"] = "\(written.statusReason ?? "")" }
        if written.isProduction { metadata["promoted"] = "auto" }
        logger.info("deployment \(written.status.rawValue.lowercased())", metadata: metadata)
    }
}

extension ChangeFeed {
    /// The keys `key` maps committed changes to, as a stream (nil: not of interest).
    public func keys<Key: Sendable>(_ key: @escaping @Sendable (Change) -> Key?) -> AsyncStream<Key> {
        let changes = subscribe()
        return AsyncStream { continuation in
            let task = Task {
                for await change in changes {
                    if let k = key(change) { continuation.yield(k) }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
