import CutoverCore
import CutoverRuntime
import CutoverStore
import Logging

/// Takes each deployment from `Pending` to `Ready` or `Failed`: reads it, probes its pod when the
/// decision needs it, and writes the plan `Reconcile.plan` returns, deciding again on the locked rows so a
/// stale read (deleted, already ready, re-registered) changes nothing.
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
        let read = try await store.read { try await $0.deploymentAndAgent(id: id) }
        guard let (deployment, agent) = read else { return .done }
        let probe: ProbeObservation? =
            if let url = Reconcile.probeURL(deployment, now: clock.now(), policy: policy) {
                ProbeObservation(of: deployment, outcome: await prober.probe(url))
            } else {
                nil
            }
        let draft = Reconcile.plan(deployment, agent: agent, probe: probe, now: clock.now(), policy: policy)
        // Nothing to write (no transition, the pending hint already recorded): no transaction.
        if draft.writesNothing { return draft.requeue }
        let (plan, written) = try await store.transaction { [clock, policy] tx -> (ReconcilePlan, Deployment?) in
            guard let agent = try await tx.agent(id: deployment.agentId, lock: true),
                let locked = try await tx.deployment(id: id, lock: true)
            else { return (ReconcilePlan(requeue: .done), nil) }
            let now = clock.now()
            let plan = Reconcile.plan(locked, agent: agent, probe: probe, now: now, policy: policy)
            try await tx.write(plan, agentId: agent.id, actor: .controller, at: now)
            return (plan, plan.deployment)
        }
        if plan.agent != nil { ControllerMetrics.promotions(.autoPromote).increment() }
        if let written, written.status != deployment.status {
            var metadata: Logger.Metadata = [
                "agent": "\(written.agentId)", "deployment": "\(id)", "status": "\(written.status.rawValue)",
            ]
            if written.status == .failed { metadata["reason"] = "\(written.statusReason ?? "")" }
            if written.isProduction { metadata["promoted"] = "auto" }
            logger.info("deployment \(written.status.rawValue.lowercased())", metadata: metadata)
        }
        return plan.requeue
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
