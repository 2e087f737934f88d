import CutoverCore
import CutoverRuntime
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// A reconciler that answers from a script and records what the loop asked of it.
final class ScriptedReconciler: Reconciler, Sendable {
    let name = "scripted"
    private let state = Mutex<(results: [String: [Result<Requeue, TestError>]], calls: [String], running: Set<String>, overlaps: Int)>(([:], [], [], 0))
    private let changes: AsyncStream<String>
    let changed: AsyncStream<String>.Continuation
    let resyncKeysList: [String]
    let batchLimit: Int
    private let batchSizes = Mutex<[Int]>([])

    struct TestError: Error {}

    init(resync: [String] = [], batchLimit: Int = 1) {
        (changes, changed) = AsyncStream.makeStream()
        resyncKeysList = resync
        self.batchLimit = batchLimit
    }

    /// The size of each `reconcile(batch:)` call, in order.
    var batches: [Int] { batchSizes.withLock { $0 } }

    func reconcile(batch keys: [String]) async -> [Result<Requeue, any Error>] {
        batchSizes.withLock { $0.append(keys.count) }
        var results: [Result<Requeue, any Error>] = []
        for key in keys {
            do { results.append(.success(try await reconcile(key))) } catch { results.append(.failure(error)) }
        }
        return results
    }

    func script(_ key: String, _ results: Result<Requeue, TestError>...) {
        state.withLock { $0.results[key, default: []] += results }
    }

    var calls: [String] { state.withLock { $0.calls } }
    var overlaps: Int { state.withLock { $0.overlaps } }

    func watch() -> AsyncStream<String> { changes }
    func resyncKeys() async throws -> [String] { resyncKeysList }

    func reconcile(_ key: String) async throws -> Requeue {
        let next = state.withLock { s -> Result<Requeue, TestError> in
            s.calls.append(key)
            if s.running.contains(key) { s.overlaps += 1 }
            s.running.insert(key)
            return s.results[key]?.isEmpty == false ? s.results[key]!.removeFirst() : .success(.done)
        }
        for _ in 0..<20 { await Task.yield() }  // give a second worker the chance to take the same key
        state.withLock { _ = $0.running.remove(key) }
        return try next.get()
    }
}

@Suite("Controller loop")
struct ControllerLoopTests {
    static func loop(_ r: ScriptedReconciler, _ clock: ManualClock, gate: any LeaderGate = AlwaysLeader(), workers: Int = 4)
        -> ControllerLoop<ScriptedReconciler>
    {
        ControllerLoop(
            r, settings: .init(workers: workers, resyncInterval: .seconds(30), backoff: .init()), clock: clock, gate: gate,
            logger: Logger(label: "test"))
    }

    /// Waits (yielding, at most 60 s of wall time) until `condition` holds. A bound in time rather than in
    /// yields: with the whole suite running, a count of yields could run out before the loop's tasks got
    /// their turns. And a long one: alone these waits end within 50 ms, but each of the loop's steps waits
    /// behind every job of the whole suite's tests, and with one CPU of two taken by another process a wait
    /// of 10 s ran out (once in two runs of the suite).
    static func until(_ what: String, _ condition: () async -> Bool) async {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if await condition() { return }
            await Task.yield()
        }
        Issue.record("never happened: \(what)")
    }

    /// Runs `loop` in a service group for `body`, then shuts it down gracefully and checks it returned.
    static func running(_ loop: ControllerLoop<ScriptedReconciler>, _ body: () async throws -> Void) async throws {
        let group = ServiceGroup(services: [loop], gracefulShutdownSignals: [], cancellationSignals: [], logger: Logger(label: "test"))
        let task = Task { try await group.run() }
        try await body()
        await group.triggerGracefulShutdown()
        try await task.value
    }

    @Test func eachResultBecomesTheRightQueueCall() async throws {
        let clock = ManualClock()
        let r = ScriptedReconciler()
        let start = clock.now()
        r.script("later", .success(.at(start + .seconds(10))))
        r.script("flaky", .success(.backoff(notAfter: nil)), .success(.backoff(notAfter: nil)))
        r.script("broken", .failure(.init()))
        let loop = Self.loop(r, clock)
        try await Self.running(loop) {
            for key in ["later", "flaky", "broken", "fine"] { r.changed.yield(key) }
            await Self.until("the first round") {
                let flaky = await loop.queue.failureCount("flaky"), broken = await loop.queue.failureCount("broken")
                let delayed = await loop.queue.pendingDelayed
                return flaky == 1 && broken == 1 && delayed == 3
            }
            #expect(r.calls.count == 4, "nothing retried before its backoff")
            #expect(await loop.queue.failureCount("fine") == 0)
            clock.advance(by: .milliseconds(100))  // the first backoff of flaky and broken
            await Self.until("the retries") {
                let flaky = await loop.queue.failureCount("flaky"), broken = await loop.queue.failureCount("broken")
                return flaky == 2 && broken == 0
            }
            #expect(r.calls.count == 6, "backoff grows; success forgets the failures")
            clock.advance(by: .milliseconds(200))
            await Self.until("flaky's third try") { r.calls.count == 7 }
            #expect(r.calls.filter { $0 == "later" }.count == 1, "not before its time")
            clock.advance(to: start + .seconds(10))
            await Self.until("later comes back at its time") { r.calls.filter { $0 == "later" }.count == 2 }
            #expect(r.calls.filter { $0 == "fine" }.count == 1, "done is done")
        }
    }

    @Test func keysThatPileUpAreReconciledInBatchesAndEachResultIsSettled() async throws {
        let clock = ManualClock()
        let keys = (1...7).map { "k\($0)" }
        let r = ScriptedReconciler(resync: keys, batchLimit: 3)
        r.script("k2", .failure(.init()))
        r.script("k3", .success(.at(clock.now() + .seconds(10))))
        r.script("k5", .success(.backoff(notAfter: nil)))
        let loop = Self.loop(r, clock, workers: 1)
        try await Self.running(loop) {
            await Self.until("every key once") { r.calls.count == keys.count }
            await Self.until("the results settled") { await loop.queue.pendingDelayed == 3 }
            #expect(Set(r.calls) == Set(keys))
            #expect(r.batches.allSatisfy { $0 <= 3 }, "no batch passes the limit")
            #expect(r.batches.contains { $0 > 1 }, "keys that waited together were taken together: \(r.batches)")
            #expect(await loop.queue.failureCount("k2") == 1, "a failed key of a batch backs off alone")
            #expect(await loop.queue.failureCount("k5") == 1)
            #expect(await loop.queue.failureCount("k1") == 0)
            clock.advance(to: clock.now() + .seconds(10))
            await Self.until("the requeued keys came back") { r.calls.count == keys.count + 3 }
            #expect(r.calls.filter { $0 == "k3" }.count == 2)
            #expect(r.calls.filter { $0 == "k1" }.count == 1, "done is done")
        }
    }

    @Test func oneWorkerPerKey() async throws {
        let clock = ManualClock()
        let r = ScriptedReconciler()
        let loop = Self.loop(r, clock, workers: 8)
        try await Self.running(loop) {
            for _ in 0..<50 {
                r.changed.yield("hot")
                r.changed.yield("other")
                await Task.yield()
            }
            await Self.until("work drained") { await loop.queue.depth == 0 && r.calls.count >= 2 }
        }
        #expect(r.overlaps == 0, "a key never ran on two workers at once")
    }

    @Test func nothingIsReconciledBeforeLeadership() async throws {
        let clock = ManualClock()
        let r = ScriptedReconciler(resync: ["a", "b"])
        let gate = Leadership()
        let loop = Self.loop(r, clock, gate: gate)
        try await Self.running(loop) {
            for _ in 0..<500 { await Task.yield() }
            #expect(r.calls.isEmpty, "a standby does not reconcile")
            gate.set(leading: true)
            await Self.until("the resync at start") { Set(r.calls) == ["a", "b"] }
            clock.advance(by: .seconds(30))
            await Self.until("the periodic resync") { r.calls.count == 4 }
        }
    }

    @Test func losingLeadershipStopsTheWorkAndRegainingItResyncs() async throws {
        let clock = ManualClock()
        let r = ScriptedReconciler(resync: ["a"])
        let gate = Leadership(leading: true)
        let loop = Self.loop(r, clock, gate: gate)
        try await Self.running(loop) {
            await Self.until("the first term's resync") { r.calls == ["a"] }
            gate.set(leading: false)
            await Self.until("the term ended") { gate.activeTerms == 0 }
            r.changed.yield("b")
            clock.advance(by: .seconds(60))  // a resync would be due, were it leading
            for _ in 0..<500 { await Task.yield() }
            #expect(r.calls == ["a"], "a former leader does no work")
            gate.set(leading: true)
            await Self.until("the next term starts from a resync") { r.calls.count == 2 }
            #expect(r.calls == ["a", "a"])
        }
    }

    @Test func shutsDownCleanlyWithDelayedKeysPending() async throws {
        let clock = ManualClock()
        let r = ScriptedReconciler()
        r.script("deadline", .success(.at(clock.now() + .seconds(3600))))
        let loop = Self.loop(r, clock)
        try await Self.running(loop) {
            r.changed.yield("deadline")
            await Self.until("delayed") { await loop.queue.pendingDelayed == 1 }
        }
        #expect(await loop.queue.pendingDelayed == 0)
        #expect(await loop.queue.timers == 0)
    }
}
