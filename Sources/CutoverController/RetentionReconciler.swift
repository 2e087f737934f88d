import CutoverCore
import CutoverRuntime
import CutoverStore
import Logging
import Metrics

/// Retention and garbage collection of one agent's deployments: expires what falls outside the
/// retention policy (restorable until collected), then hard-deletes what expired, in transactions of at
/// most `batchSize` rows so API requests on the same agent never wait long behind it. Runs on every
/// resync (every `--gc-interval`) and again when the next expiry of the agent falls due.
public struct RetentionReconciler: Reconciler {
    public let name = "retention"
    let store: any Store
    let policy: RetentionPolicy
    let clock: any ControllerClock
    let logger: Logger
    let batchSize: Int
    private let collected = Counter(label: "cutover_gc_deleted_total")
    private let expired = Counter(label: "cutover_retention_expired_total")

    public init(
        store: any Store, policy: RetentionPolicy, clock: any ControllerClock, logger: Logger, batchSize: Int = 500
    ) {
        self.store = store
        self.policy = policy
        self.clock = clock
        self.logger = logger
        // A batch of at most 0 rows would never come back short, and the collection would never end.
        self.batchSize = max(1, batchSize)
    }

    /// Retention runs on every pass and when an expiry falls due, not on each write: a registration storm
    /// must not cost a retention pass per registration.
    public func watch() -> AsyncStream<String> { AsyncStream { $0.finish() } }

    public func resyncKeys() async throws -> [String] {
        try await store.read { try await $0.agentIds() }
    }

    public func reconcile(_ agentId: String) async throws -> Requeue {
        // Only the live deployments are read (an agent may have thousands waiting for collection); the
        // earliest future expiry of the others comes from the index.
        let planned = try await store.transaction { [clock, policy] tx -> (RetentionPlan, Timestamp?)? in
            guard let agent = try await tx.agent(id: agentId, lock: true) else { return nil }
            let now = clock.now()
            let plan = Retention.plan(
                agent: agent, deployments: try await tx.liveDeployments(agentId: agentId), now: now, policy: policy,
                taskActivity: try await tx.runningTaskActivity(agentId: agentId))
            for deployment in plan.expire { try await tx.updateDeployment(deployment) }
            tx.appendEvents(agentId: agentId, plan.events, actor: .controller, at: now)
            return (plan, try await tx.nextExpiry(agentId: agentId, after: now))
        }
        guard let (plan, nextExpiry) = planned else { return .done }
        if !plan.expire.isEmpty {
            expired.increment(by: plan.expire.count)
            logger.info(
                "retention expired deployments",
                metadata: ["agent": "\(agentId)", "deployments": "\(plan.expire.map(\.id).joined(separator: ","))"])
        }
        var total = 0
        while true {
            let started = ContinuousClock.now
            let ids = try await store.transaction { [clock, batchSize] tx -> [String] in
                guard try await tx.agent(id: agentId, lock: true) != nil else { return [] }
                return try await tx.collectExpired(agentId: agentId, now: clock.now(), limit: batchSize)
            }
            total += ids.count
            collected.increment(by: ids.count)
            if ids.count < batchSize { break }
            // Leave the database and the CPUs to the API half of the time: a big collection takes longer,
            // requests do not queue behind it.
            try await Task.sleep(for: min(ContinuousClock.now - started, .milliseconds(250)))
        }
        if total > 0 {
            logger.info("garbage-collected deployments", metadata: ["agent": "\(agentId)", "count": "\(total)"])
        }
        let next = [plan.nextCheck, nextExpiry].compactMap { $0 }.min()
        return next.map { .at(max($0, clock.now())) } ?? .done
    }
}
