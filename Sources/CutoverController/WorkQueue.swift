import CutoverCore
import DequeModule
import Metrics

/// A controller work queue (after client-go's): a key waits at most once, never runs on two workers at
/// once (a key added while running is run again after `done`), failures back off per key, and delayed
/// adds fire at their due time.
public actor WorkQueue<Key: Hashable & Sendable> {
    private var queue: Deque<Key> = []
    private var dirty: Set<Key> = []
    private var processing: Set<Key> = []
    private var failures: [Key: Int] = [:]
    private var delayed: [Key: (due: ContinuousClock.Instant, task: Task<Void, Never>)] = [:]
    private var waiters: Deque<CheckedContinuation<Key?, Never>> = []
    private var isShutDown = false
    private let backoff: Backoff
    private let clock = ContinuousClock()
    private let depthGauge: Gauge
    private let addsCounter: Counter
    private let retriesCounter: Counter

    public init(name: String, backoff: Backoff = .init()) {
        self.backoff = backoff
        depthGauge = Gauge(label: "workqueue_depth", dimensions: [("name", name)])
        addsCounter = Counter(label: "workqueue_adds_total", dimensions: [("name", name)])
        retriesCounter = Counter(label: "workqueue_retries_total", dimensions: [("name", name)])
    }

    public func add(_ key: Key) {
        guard !isShutDown, !dirty.contains(key) else { return }
        addsCounter.increment()
        dirty.insert(key)
        guard !processing.contains(key) else { return }
        if let waiter = waiters.popFirst() {
            dirty.remove(key)
            processing.insert(key)
            waiter.resume(returning: key)
        } else {
            queue.append(key)
            depthGauge.record(queue.count)
        }
    }

    /// Adds `key` after `delay`; an earlier pending due time for the same key wins.
    public func add(_ key: Key, after delay: Duration) {
        guard !isShutDown else { return }
        guard delay > .zero else { return add(key) }
        let due = clock.now.advanced(by: delay)
        if let existing = delayed[key] {
            if existing.due <= due { return }
            existing.task.cancel()
        }
        let task = Task { [clock] in
            do { try await clock.sleep(until: due) } catch { return }
            self.fire(key, due: due)
        }
        delayed[key] = (due, task)
    }

    private func fire(_ key: Key, due: ContinuousClock.Instant) {
        guard delayed[key]?.due == due else { return }
        delayed[key] = nil
        add(key)
    }

    /// Re-adds a failed key after its next backoff delay, no later than `cap` if given.
    public func addRateLimited(_ key: Key, cap: Duration? = nil) {
        let count = (failures[key] ?? 0) + 1
        failures[key] = count
        retriesCounter.increment()
        var delay = backoff.delay(afterFailures: count)
        if let cap { delay = min(delay, max(cap, .zero)) }
        add(key, after: delay)
    }

    /// Resets the key's backoff after a success.
    public func forget(_ key: Key) {
        failures[key] = nil
    }

    public func failureCount(_ key: Key) -> Int { failures[key] ?? 0 }

    /// The next key to work on; nil once the queue is shut down.
    public func next() async -> Key? {
        if let key = queue.popFirst() {
            depthGauge.record(queue.count)
            dirty.remove(key)
            processing.insert(key)
            return key
        }
        if isShutDown { return nil }
        return await withCheckedContinuation { waiters.append($0) }
    }

    public func done(_ key: Key) {
        processing.remove(key)
        if dirty.contains(key) {
            dirty.remove(key)
            add(key)
        }
    }

    public func shutDown() {
        isShutDown = true
        for (_, entry) in delayed { entry.task.cancel() }
        delayed.removeAll()
        while let waiter = waiters.popFirst() { waiter.resume(returning: nil) }
    }

    public var depth: Int { queue.count }
    public var pendingDelayed: Int { delayed.count }
}
