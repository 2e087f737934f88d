import CutoverCore
import CutoverRuntime
import Testing

/// The work queue on a manual clock: nothing here sleeps in real time.
@Suite("Work queue")
struct WorkQueueTests {
    static func queue(_ clock: ManualClock) -> WorkQueue<String> {
        WorkQueue(name: "test", backoff: Backoff(base: .milliseconds(100), cap: .seconds(30)), clock: clock)
    }

    /// Waits (bounded, by yielding) until the queue holds `depth` keys ready to hand out.
    static func settle(_ q: WorkQueue<String>, depth: Int) async throws {
        for _ in 0..<10_000 {
            if await q.depth == depth { return }
            await Task.yield()
        }
        Issue.record("the queue never reached depth \(depth); it has \(await q.depth)")
    }

    /// Lets the queue's timer task run if it (wrongly) would: used before asserting that nothing fired.
    func yieldMany() async {
        for _ in 0..<200 { await Task.yield() }
    }

    @Test func deduplicatesWaitingKeys() async {
        let q = Self.queue(ManualClock())
        await q.add("a")
        await q.add("a")
        await q.add("b")
        #expect(await q.depth == 2)
        #expect(await q.next() == "a")
        #expect(await q.next() == "b")
        #expect(await q.depth == 0)
    }

    @Test func aBatchTakesTheReadyKeysWithoutWaitingForMore() async {
        let q = Self.queue(ManualClock())
        for key in ["a", "b", "c", "d"] { await q.add(key) }
        #expect(await q.next(upTo: 3) == ["a", "b", "c"])
        #expect(await q.next(upTo: 3) == ["d"], "one ready key is a batch of one; it does not wait for more")
        await q.add("a")
        #expect(await q.depth == 0, "a key of a batch is still being processed: it waits for done")
        await q.done("a")
        #expect(await q.next(upTo: 3) == ["a"])
        let waiting = Task { await q.next(upTo: 3) }
        await q.shutDown()
        #expect(await waiting.value == [], "shut down: an empty batch ends the worker")
    }

    @Test func neverHandsOutAKeyThatIsBeingProcessed() async {
        let q = Self.queue(ManualClock())
        await q.add("a")
        #expect(await q.next() == "a")
        await q.add("a")  // changed while a worker holds it
        await q.add("b")
        #expect(await q.depth == 1, "a waits for its worker to finish")
        #expect(await q.next() == "b")
        await q.done("a")
        #expect(await q.next() == "a", "re-run once after done, because it changed meanwhile")
    }

    @Test func backsOffPerKeyDoublingToTheCap() async throws {
        let clock = ManualClock()
        let q = Self.queue(clock)
        var expected: Duration = .milliseconds(100)
        for failure in 1...12 {
            await q.addRateLimited("a")
            #expect(await q.failureCount("a") == failure)
            clock.advance(by: expected - .microseconds(1))
            await yieldMany()
            #expect(await q.depth == 0, "failure \(failure): not before \(expected)")
            clock.advance(by: .microseconds(1))
            try await Self.settle(q, depth: 1)
            #expect(await q.next() == "a")
            await q.done("a")
            expected = min(expected * 2, .seconds(30))
        }
        #expect(expected == .seconds(30), "the cap was reached")
        await q.forget("a")
        #expect(await q.failureCount("a") == 0)
        #expect(await q.failureCount("b") == 0, "backoff is per key")
    }

    @Test func backoffNeverPassesItsCap() async throws {
        let clock = ManualClock()
        let q = Self.queue(clock)
        for _ in 0..<5 { await q.addRateLimited("a") }  // the next delay would be 1.6 s
        await q.addRateLimited("a", notAfter: clock.now() + .milliseconds(250))
        clock.advance(by: .milliseconds(250))
        try await Self.settle(q, depth: 1)
    }

    @Test func aDelayedKeyOnlyMovesEarlier() async throws {
        let clock = ManualClock()
        let q = Self.queue(clock)
        await q.add("deadline", after: .seconds(5))
        await q.add("deadline", after: .seconds(1))
        await q.add("deadline", after: .seconds(3))
        #expect(await q.pendingDelayed == 1)
        clock.advance(by: .milliseconds(999))
        await yieldMany()
        #expect(await q.depth == 0)
        clock.advance(by: .milliseconds(1))
        try await Self.settle(q, depth: 1)
        #expect(await q.next() == "deadline")
        await q.done("deadline")
        clock.advance(by: .seconds(10))
        await yieldMany()
        #expect(await q.depth == 0, "the later due times were dropped, not fired as well")
        #expect(await q.pendingDelayed == 0)
    }

    @Test func tenThousandDeadlinesCostOneTimer() async throws {
        let clock = ManualClock()
        let q = Self.queue(clock)
        for i in 0..<10_000 { await q.add("d\(i)", after: .seconds(600) + .microseconds(Int64(i % 7))) }
        #expect(await q.pendingDelayed == 10_000)
        #expect(await q.timers == 1)
        #expect(clock.sleepers <= 1)
        clock.advance(by: .seconds(601))
        try await Self.settle(q, depth: 10_000)
        #expect(await q.pendingDelayed == 0)
        #expect(await q.timers == 0)
    }

    @Test func delayedKeysFireInDueOrder() async throws {
        let clock = ManualClock()
        let q = Self.queue(clock)
        await q.add("late", after: .seconds(3))
        await q.add("early", after: .seconds(1))
        await q.add("middle", after: .seconds(2))
        clock.advance(by: .seconds(3))
        try await Self.settle(q, depth: 3)
        #expect(await q.next() == "early")
        #expect(await q.next() == "middle")
        #expect(await q.next() == "late")
    }

    @Test func shutDownReleasesWorkersAndDropsDelayedKeys() async throws {
        let clock = ManualClock()
        let q = Self.queue(clock)
        await q.add("later", after: .seconds(60))
        async let idle = q.next()
        await yieldMany()
        await q.shutDown()
        #expect(await idle == nil)
        #expect(await q.pendingDelayed == 0)
        #expect(await q.timers == 0)
        clock.advance(by: .seconds(120))
        await q.add("y")
        #expect(await q.depth == 0, "nothing is accepted after shutdown")
    }
}
