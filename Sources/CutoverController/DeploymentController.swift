import CutoverCore
import CutoverStore
import Logging
import Metrics
import ServiceLifecycle

public struct ControllerSettings: Sendable {
    public var workers: Int
    public var resyncInterval: Duration
    public var backoff: Backoff

    public init(workers: Int = 4, resyncInterval: Duration = .seconds(30), backoff: Backoff = .init()) {
        self.workers = workers
        self.resyncInterval = resyncInterval
        self.backoff = backoff
    }
}

/// The reconcile loop: change feed and periodic resync feed the work queue; workers reconcile one
/// deployment at a time through `ControlPlane.applyReconcile`.
public final class DeploymentController: Service {
    let controlPlane: ControlPlane
    let prober: any ReadinessProber
    let settings: ControllerSettings
    let logger: Logger
    public let queue: WorkQueue<String>
    private let reconcileTimer = Timer(label: "controller_runtime_reconcile_time_seconds", dimensions: [("controller", "deployment")])

    public init(controlPlane: ControlPlane, prober: any ReadinessProber, settings: ControllerSettings, logger: Logger) {
        self.controlPlane = controlPlane
        self.prober = prober
        self.settings = settings
        self.logger = logger
        self.queue = WorkQueue(name: "deployment", backoff: settings.backoff)
    }

    public func run() async throws {
        let changes = controlPlane.store.changes.subscribe()
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.watch(changes) }
                group.addTask { await self.resyncLoop() }
                for _ in 0..<max(1, settings.workers) {
                    group.addTask { await self.work() }
                }
                await group.next()
                group.cancelAll()
                await queue.shutDown()
            }
        } onGracefulShutdown: {
            Task { await self.queue.shutDown() }
        }
    }

    private func watch(_ changes: AsyncStream<Change>) async {
        for await change in changes {
            if change.needsReconcile, let id = change.deploymentId { await queue.add(id) }
        }
    }

    private func resyncLoop() async {
        while !Task.isCancelled {
            await resync()
            do { try await Task.sleep(for: settings.resyncInterval) } catch { return }
        }
    }

    /// Enqueues every deployment that may still need work: catches anything the feed missed.
    public func resync() async {
        do {
            let ids = try await controlPlane.store.read { try await $0.pendingDeploymentIds() }
            for id in ids { await queue.add(id) }
        } catch {
            logger.warning("resync failed", metadata: ["error": "\(error)"])
        }
    }

    private func work() async {
        while let id = await queue.next() {
            await reconcileAndRequeue(id)
            await queue.done(id)
        }
    }

    private func reconcileAndRequeue(_ id: String) async {
        let start = ContinuousClock.now
        var result = "success"
        defer {
            reconcileTimer.recordNanoseconds((ContinuousClock.now - start).microseconds * 1_000)
            Counter(label: "controller_runtime_reconcile_total", dimensions: [("controller", "deployment"), ("result", result)])
                .increment()
        }
        do {
            let action = try await reconcile(id)
            switch action {
            case .awaitRegistration(let deadline):
                await queue.forget(id)
                await queue.add(id, after: deadline - .now())
                result = "requeue_after"
            case .retryProbe(_, let deadline):
                await queue.addRateLimited(id, cap: deadline - .now())
                result = "requeue"
            case .probe:
                // Registered between the read and the locked re-read: decide again with a probe.
                await queue.add(id)
            default:
                await queue.forget(id)
            }
        } catch is CancellationError {
            result = "cancelled"
        } catch {
            result = "error"
            Counter(label: "controller_runtime_reconcile_errors_total", dimensions: [("controller", "deployment")]).increment()
            logger.warning("reconcile failed", metadata: ["deployment": "\(id)", "error": "\(error)"])
            await queue.addRateLimited(id)
        }
    }

    /// One level-triggered pass over deployment `id`: decide, probe when asked, and apply.
    public func reconcile(_ id: String) async throws -> ReconcileAction {
        guard let deployment = try await controlPlane.store.read({ try await $0.deployment(id: id) }) else {
            return .none
        }
        let policy = controlPlane.settings.reconcile
        var outcome: ProbeOutcome?
        var decision = Reconcile.decide(deployment, probe: nil, now: .now(), policy: policy)
        if case .probe(let url) = decision {
            outcome = await prober.probe(url)
            decision = Reconcile.decide(deployment, probe: outcome, now: .now(), policy: policy)
        }
        // Nothing to write (no transition, the pending hint already recorded): skip the transaction.
        switch decision {
        case .none:
            return decision
        case .awaitRegistration, .retryProbe:
            if deployment.statusReason == Reconcile.pendingHint(decision) { return decision }
        default:
            break
        }
        let action = try await controlPlane.applyReconcile(deployment, probe: outcome)
        switch action {
        case .markReady:
            logger.info(
                "deployment ready", metadata: ["agent": "\(deployment.agentId)", "deployment": "\(id)"])
        case .markFailed(let reason, let detail):
            logger.info(
                "deployment failed",
                metadata: ["agent": "\(deployment.agentId)", "deployment": "\(id)", "reason": "\(reason.rawValue)",
                           "detail": "\(detail)"])
        default:
            break
        }
        return action
    }
}
