import CutoverCore
import DequeModule
import HeapModule
import Metrics

/// A controller work queue, after client-go's: a key waits at most once and never runs on two workers at
/// once (a key added while it runs is run again after `done`); failures back off per key; delayed keys
/// wait on one heap behind one timer, so ten thousand deadlines cost one sleeping task, and a key's due
/// time only ever moves earlier.
public actor WorkQueue<Key: Hashable & Sendable> {
    private struct Delayed: Comparable {
        var due: Timestamp
        var order: Int
        var key: Key
        static func < (a: Delayed, b: Delayed) -> Bool { (a.due, a.order) < (b.due, b.order) }
        static func == (a: Delayed, b: Delayed) -> Bool { a.due == b.due && a.order == b.order }
    }

    private var queue: Deque<Key> = []
    private var dirty: Set<Key> = []
    private var processing: [Key: Timestamp] = [:]
    private var queuedAt: [Key: Timestamp] = [:]
    private var failures: [Key: Int] = [:]
    private var delayed = Heap<Delayed>()
    /// The one due time of each delayed key; heap entries that disagree are stale and skipped.
    private var dueTimes: [Key: Timestamp] = [:]
    private var delayedOrder = 0
    private var timer: (due: Timestamp, task: Task<Void, Never>)?
    private var waiters: Deque<CheckedContinuation<Key?, Never>> = []
    private var isShutDown = false
    private let backoff: Backoff
    private let clock: any ControllerClock
    private let depthGauge: Gauge
    private let addsCounter: Counter
    private let retriesCounter: Counter
    private let queueDuration: Timer
    private let workDuration: Timer

    public init(name: String, backoff: Backoff = .init(), clock: any ControllerClock = SystemClock()) {
        self.backoff = backoff
        self.clock = clock
        depthGauge = Gauge(label: "workqueue_depth", dimensions: [("name", name)])
        addsCounter = Counter(label: "workqueue_adds_total", dimensions: [("name", name)])
        retriesCounter = Counter(label: "workqueue_retries_total", dimensions: [("name", name)])
        queueDuration = Timer(label: "workqueue_queue_duration_seconds", dimensions: [("name", name)])
        workDuration = Timer(label: "workqueue_work_duration_seconds", dimensions: [("name", name)])
    }

    public func add(_ key: Key) {
        guard !isShutDown, !dirty.contains(key) else { return }
        addsCounter.increment()
        dirty.insert(key)
        guard processing[key] == nil else { return }
        if let waiter = waiters.popFirst() {
            dirty.remove(key)
            processing[key] = clock.now()
            queueDuration.recordNanoseconds(0)
            waiter.resume(returning: key)
        } else {
            queue.append(key)
            queuedAt[key] = clock.now()
            depthGauge.record(queue.count)
        }
    }

    /// Adds `key` after `delay`.
    public func add(_ key: Key, after delay: Duration) {
        add(key, at: clock.now() + delay)
    }

    /// Adds `key` at `due`; an earlier pending due time for the same key wins.
    public func add(_ key: Key, at due: Timestamp) {
        guard !isShutDown else { return }
        guard due > clock.now() else { return add(key) }
        if let existing = dueTimes[key], existing <= due { return }
        dueTimes[key] = due
        delayedOrder += 1
        delayed.insert(Delayed(due: due, order: delayedOrder, key: key))
        armTimer()
    }

    /// Re-adds a failed key after its next backoff delay, no later than `cap` if given.
    public func addRateLimited(_ key: Key, notAfter cap: Timestamp? = nil) {
        let count = (failures[key] ?? 0) + 1
        failures[key] = count
        retriesCounter.increment()
        var due = clock.now() + backoff.delay(afterFailures: count)
        if let cap { due = min(due, cap) }
        add(key, at: due)
    }

    /// Resets the key's backoff after a success.
    public func forget(_ key: Key) {
        failures[key] = nil
    }

    public func failureCount(_ key: Key) -> Int { failures[key] ?? 0 }

    /// The next key to work on; nil once the queue is shut down.
    public func next() async -> Key? {
        if let key = popReady() { return key }
        if isShutDown { return nil }
        return await withCheckedContinuation { waiters.append($0) }
    }

    /// The next key as `next()` gives it, with up to `limit - 1` more that are ready now (never waiting for
    /// them); empty once the queue is shut down.
    public func next(upTo limit: Int) async -> [Key] {
        guard let first = await next() else { return [] }
        var keys = [first]
        while keys.count < limit, let key = popReady() { keys.append(key) }
        return keys
    }

    /// Takes the first ready key into processing.
    private func popReady() -> Key? {
        guard let key = queue.popFirst() else { return nil }
        depthGauge.record(queue.count)
        dirty.remove(key)
        let now = clock.now()
        if let since = queuedAt.removeValue(forKey: key) { queueDuration.record(now - since) }
        processing[key] = now
        return key
    }

    public func done(_ key: Key) {
        if let since = processing.removeValue(forKey: key) { workDuration.record(clock.now() - since) }
        if dirty.contains(key) {
            dirty.remove(key)
            add(key)
        }
    }

    public func shutDown() {
        isShutDown = true
        timer?.task.cancel()
        timer = nil
        delayed = Heap()
        dueTimes.removeAll()
        while let waiter = waiters.popFirst() { waiter.resume(returning: nil) }
    }

    /// Accepts keys again after `shutDown`, empty: a new leadership term starts from a resync.
    public func reopen() {
        guard isShutDown else { return }
        isShutDown = false
        queue.removeAll()
        dirty.removeAll()
        queuedAt.removeAll()
        failures.removeAll()
        depthGauge.record(0)
    }

    public var depth: Int { queue.count }
    /// Keys waiting for a due time.
    public var pendingDelayed: Int { dueTimes.count }
    /// Sleeping timer tasks: one while any key is delayed, never more.
    public var timers: Int { timer == nil ? 0 : 1 }

    // MARK: The timer

    /// Makes the one timer wake at the earliest due time.
    private func armTimer() {
        while let first = delayed.min, dueTimes[first.key] != first.due { _ = delayed.removeMin() }
        guard let earliest = delayed.min?.due else {
            timer?.task.cancel()
            timer = nil
            return
        }
        if let timer, timer.due <= earliest { return }
        timer?.task.cancel()
        let clock = clock
        let task = Task {
            do { try await clock.sleep(until: earliest) } catch { return }
            // Back on the actor: a timer replaced meanwhile was cancelled here, and must not fire.
            guard !Task.isCancelled else { return }
            self.fireDue()
        }
        timer = (earliest, task)
    }

    private func fireDue() {
        timer = nil
        let now = clock.now()
        while let first = delayed.min, first.due <= now {
            _ = delayed.removeMin()
            guard dueTimes[first.key] == first.due else { continue }
            dueTimes[first.key] = nil
            add(first.key)
        }
        armTimer()
    }
}

extension Timer {
    func record(_ duration: Duration) {
        recordNanoseconds(max(0, duration.microseconds) * 1_000)
    }
}
