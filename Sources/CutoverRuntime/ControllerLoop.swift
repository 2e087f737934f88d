import CutoverCore
import Logging
import Metrics
import ServiceLifecycle

public struct LoopSettings: Sendable {
    public var workers: Int
    public var resyncInterval: Duration
    public var backoff: Backoff

    public init(workers: Int = 4, resyncInterval: Duration = .seconds(30), backoff: Backoff = .init()) {
        self.workers = workers
        self.resyncInterval = resyncInterval
        self.backoff = backoff
    }
}

/// Runs one reconciler: once this replica leads, changes and a periodic resync feed the work queue, and
/// workers reconcile one key at a time (or, when several are ready, a batch the reconciler takes
/// together), turning each result into queue calls here and nowhere else. Knows nothing of what the keys
/// are.
public final class ControllerLoop<R: Reconciler>: Service {
    public let reconciler: R
    public let queue: WorkQueue<R.Key>
    let settings: LoopSettings
    let clock: any ControllerClock
    let gate: any LeaderGate
    let logger: Logger
    private let reconcileTime: Timer
    private let errors: Counter
    private let outcomes: [String: Counter]

    public init(
        _ reconciler: R, settings: LoopSettings, clock: any ControllerClock = SystemClock(),
        gate: any LeaderGate = AlwaysLeader(), logger: Logger
    ) {
        self.reconciler = reconciler
        self.settings = settings
        self.clock = clock
        self.gate = gate
        self.logger = logger
        queue = WorkQueue(name: reconciler.name, backoff: settings.backoff, clock: clock)
        let controller = ("controller", reconciler.name)
        reconcileTime = Timer(label: "controller_runtime_reconcile_time_seconds", dimensions: [controller])
        errors = Counter(label: "controller_runtime_reconcile_errors_total", dimensions: [controller])
        var outcomes: [String: Counter] = [:]
        for result in ["success", "error", "requeue", "requeue_after"] {
            outcomes[result] = Counter(
                label: "controller_runtime_reconcile_total", dimensions: [controller, ("result", result)])
        }
        self.outcomes = outcomes
    }

    /// Returns when the service group shuts down or the task is cancelled (never by throwing: either is a
    /// clean exit). Work happens only inside leadership terms; a lost term stops the workers, and the next
    /// term starts from a resync.
    public func run() async {
        await cancelWhenGracefulShutdown {
            await self.gate.whileLeading { await self.term() }
        }
    }

    /// One leadership term: watch, resync and workers until the term is cancelled (leadership lost, or
    /// shutdown). The workers end when the queue shuts down; the watch and the resync end with them.
    private func term() async {
        await queue.reopen()
        await withTaskCancellationHandler {
            let changes = reconciler.watch()
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await key in changes { await self.queue.add(key) }
                }
                group.addTask { await self.resyncLoop() }
                await withTaskGroup(of: Void.self) { workers in
                    for _ in 0..<max(1, settings.workers) {
                        workers.addTask { await self.work() }
                    }
                }
                group.cancelAll()
            }
        } onCancel: {
            Task { await self.queue.shutDown() }
        }
    }

    private func resyncLoop() async {
        while !Task.isCancelled {
            await resync()
            do { try await clock.sleep(until: clock.now() + settings.resyncInterval) } catch { return }
        }
    }

    /// Enqueues every key the reconciler may still have work on.
    public func resync() async {
        do {
            for key in try await reconciler.resyncKeys() { await queue.add(key) }
        } catch is CancellationError {
            return
        } catch {
            logger.warning("resync failed", metadata: ["controller": "\(reconciler.name)", "error": "\(error)"])
        }
    }

    private func work() async {
        while !Task.isCancelled {
            let keys = await queue.next(upTo: max(1, reconciler.batchLimit))
            guard let first = keys.first else { return }
            if keys.count == 1 {
                await reconcileOnce(first)
            } else {
                let start = ContinuousClock.now
                let results = await reconciler.reconcile(batch: keys)
                for (key, result) in zip(keys, results) { await settle(key, result, start: start) }
            }
            for key in keys { await queue.done(key) }
        }
    }

    /// Reconciles `key` and schedules what its result asks for.
    public func reconcileOnce(_ key: R.Key) async {
        let start = ContinuousClock.now
        let result: Result<Requeue, any Error>
        do { result = .success(try await reconciler.reconcile(key)) } catch { result = .failure(error) }
        await settle(key, result, start: start)
    }

    /// Schedules what `key`'s result asks for, and counts it.
    private func settle(_ key: R.Key, _ reconciled: Result<Requeue, any Error>, start: ContinuousClock.Instant) async {
        let result: String
        switch reconciled {
        case .success(.done):
            await queue.forget(key)
            result = "success"
        case .success(.at(let due)):
            await queue.forget(key)
            await queue.add(key, at: due)
            result = "requeue_after"
        case .success(.backoff(let notAfter)):
            await queue.addRateLimited(key, notAfter: notAfter)
            result = "requeue"
        case .failure where Task.isCancelled:
            // The term is ending (shutdown or lost leadership): not a failure, and whoever leads next
            // starts from a resync.
            return
        case .failure(let error):
            errors.increment()
            logger.warning(
                "reconcile failed",
                metadata: ["controller": "\(reconciler.name)", "key": "\(key)", "error": "\(error)"])
            await queue.addRateLimited(key)
            result = "error"
        }
        outcomes[result]?.increment()
        reconcileTime.record(ContinuousClock.now - start)
    }
}
