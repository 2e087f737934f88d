import CutoverController
import CutoverCore
import Testing

@Suite("Work queue")
struct WorkQueueTests {
    static func queue() -> WorkQueue<String> {
        WorkQueue(name: "test", backoff: Backoff(base: .milliseconds(20), cap: .milliseconds(80)))
    }

    @Test func deduplicatesWaitingKeys() async {
        let q = Self.queue()
        await q.add("a")
        await q.add("a")
        await q.add("b")
        #expect(await q.depth == 2)
        #expect(await q.next() == "a")
        #expect(await q.next() == "b")
        #expect(await q.depth == 0)
    }

    @Test func neverHandsOutAKeyThatIsBeingProcessed() async {
        let q = Self.queue()
        await q.add("a")
        #expect(await q.next() == "a")
        await q.add("a")  // changed while a worker holds it
        await q.add("b")
        #expect(await q.depth == 1, "a waits for its worker to finish")
        #expect(await q.next() == "b")
        await q.done("a")
        #expect(await q.next() == "a", "re-run once after done, because it changed meanwhile")
    }

    @Test func backsOffPerKeyAndForgetResets() async throws {
        let q = Self.queue()
        let clock = ContinuousClock()
        let start = clock.now
        await q.addRateLimited("a")
        await q.addRateLimited("a")
        #expect(await q.failureCount("a") == 2)
        #expect(await q.depth == 0, "not retried immediately")
        #expect(await q.next() == "a")
        #expect(clock.now - start >= .milliseconds(20))
        await q.forget("a")
        #expect(await q.failureCount("a") == 0)
        #expect(await q.failureCount("b") == 0, "backoff is per key")
    }

    @Test func delayedAddsFireAtTheirDueTimeAndTheEarliestWins() async throws {
        let q = Self.queue()
        let clock = ContinuousClock()
        let start = clock.now
        await q.add("deadline", after: .seconds(5))
        await q.add("deadline", after: .milliseconds(60))
        await q.add("deadline", after: .seconds(3))
        #expect(await q.pendingDelayed == 1)
        #expect(await q.depth == 0)
        #expect(await q.next() == "deadline")
        let elapsed = clock.now - start
        #expect(elapsed >= .milliseconds(60))
        #expect(elapsed < .seconds(2), "the earliest due time won: \(elapsed)")
        #expect(await q.pendingDelayed == 0)
    }

    @Test func shutDownReleasesWaitingWorkers() async {
        let q = Self.queue()
        async let waiting = q.next()
        await q.add("x")
        #expect(await waiting == "x")
        async let idle = q.next()
        await q.shutDown()
        #expect(await idle == nil)
        await q.add("y")
        #expect(await q.depth == 0, "nothing is accepted after shutdown")
    }
}
