import Synchronization
import Testing

@testable import CutoverRuntime

/// One batch of a line's writes at a time per process; the callers that came meanwhile written together
/// by the next, in the order they came.
@Suite struct WriteBatchesTests {
    typealias Batches = WriteBatches<String, Int, String>

    /// Records each batch run, and holds a run open until it is let go.
    final class Runs: Sendable {
        let batches = Mutex<[[Int]]>([])
        let gate: AsyncStream<Void>
        let open: AsyncStream<Void>.Continuation
        let holding: Set<Int>

        /// A batch with an item of `holding` waits for `open` before it ends.
        init(holding: Set<Int> = [0]) {
            (gate, open) = AsyncStream<Void>.makeStream()
            self.holding = holding
        }

        /// Each item's output is its key and the item.
        func run(_ key: String, _ items: [Int]) async throws -> [String] {
            batches.withLock { $0.append(items) }
            if !holding.isDisjoint(with: items) { for await _ in gate { break } }
            return items.map { "\(key)\($0)" }
        }

        var count: Int { batches.withLock { $0.count } }
    }

    /// Submits `item` in a task of `group`, with `run`'s key `key`.
    static func submit(
        _ batches: Batches, _ runs: Runs, _ item: Int, key: String = "k", size: Int = 1, task: String = "t",
        in group: inout ThrowingTaskGroup<(Int, String), any Error>
    ) {
        group.addTask { (item, try await batches.submit(item, on: task, key: key, size: size, run: runs.run)) }
    }

    static func outputs(_ group: inout ThrowingTaskGroup<(Int, String), any Error>) async throws -> [Int: String] {
        var all: [Int: String] = [:]
        for try await (item, output) in group { all[item] = output }
        return all
    }

    @Test func callersThatComeWhileABatchRunsAreWrittenTogetherInTheOrderTheyCame() async throws {
        let batches = Batches()
        let runs = Runs()
        let outputs = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            // The first runs at once, alone, and holds its batch open until the others all wait.
            Self.submit(batches, runs, 0, in: &group)
            _ = try await eventually("the first batch running") { runs.count == 1 ? true : nil }
            for i in 1...5 {
                Self.submit(batches, runs, i, in: &group)
                // Each caller queues before the next is started, so the order they came is 1, 2, ...
                _ = try await eventually("caller \(i) waiting") { batches.waiting(on: "t") == i ? true : nil }
            }
            // Another task's writes do not wait meanwhile.
            #expect(try await batches.submit(9, on: "u", key: "k", size: 1, run: runs.run) == "k9")
            runs.open.yield()
            return try await Self.outputs(&group)
        }
        #expect(runs.batches.withLock { $0 } == [[0], [9], [1, 2, 3, 4, 5]])
        #expect(outputs == [0: "k0", 1: "k1", 2: "k2", 3: "k3", 4: "k4", 5: "k5"])
        #expect(batches.busyLines == 0)
    }

    @Test func aBatchEndsAtAnotherKeyAtItsCountAndAtItsBytes() async throws {
        let batches = Batches(maxItems: 3, maxBytes: 100)
        let runs = Runs()
        // Waiting, in this order: 1…4 (three make a batch), 5 of another key, 6 and 7 of 60 bytes each (the
        // second would pass 100), 8 of 150 bytes (alone, being larger than a batch may be), then 9.
        let waiters: [(item: Int, key: String, size: Int)] = [
            (1, "k", 1), (2, "k", 1), (3, "k", 1), (4, "k", 1), (5, "j", 1), (6, "k", 60), (7, "k", 60), (8, "k", 150),
            (9, "k", 1),
        ]
        let outputs = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            Self.submit(batches, runs, 0, in: &group)
            _ = try await eventually("the first batch running") { runs.count == 1 ? true : nil }
            for (n, waiter) in waiters.enumerated() {
                Self.submit(batches, runs, waiter.item, key: waiter.key, size: waiter.size, in: &group)
                _ = try await eventually("caller \(waiter.item) waiting") { batches.waiting(on: "t") == n + 1 ? true : nil }
            }
            runs.open.yield()
            return try await Self.outputs(&group)
        }
        #expect(runs.batches.withLock { $0 } == [[0], [1, 2, 3], [4], [5], [6], [7], [8], [9]])
        #expect(outputs[5] == "j5")
        #expect(outputs[8] == "k8")
        #expect(outputs.count == 10)
    }

    struct Refused: Error {}
    final class Refusals: Sendable { let count = Mutex(0) }

    @Test func aFailedBatchFailsEachOfItsCallersAndTheNextBatchRuns() async throws {
        let batches = Batches()
        let runs = Runs()
        let failing: Batches.Run = { key, items in
            _ = try await runs.run(key, items)
            throw Refused()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await batches.submit(0, on: "t", key: "k", size: 1, run: runs.run) }
            _ = try await eventually("the first batch running") { runs.count == 1 ? true : nil }
            let refused = Refusals()
            for i in 1...3 {
                // The first of these leads their batch: its `run` is the batch's.
                let run = i == 1 ? failing : runs.run
                group.addTask {
                    do { _ = try await batches.submit(i, on: "t", key: "k", size: 1, run: run) } catch is Refused {
                        refused.count.withLock { $0 += 1 }
                    }
                }
                _ = try await eventually("caller \(i) waiting") { batches.waiting(on: "t") == i ? true : nil }
            }
            runs.open.yield()
            try await group.waitForAll()
            #expect(refused.count.withLock { $0 } == 3)
        }
        #expect(try await batches.submit(4, on: "t", key: "k", size: 1, run: runs.run) == "k4")
        #expect(runs.batches.withLock { $0 } == [[0], [1, 2, 3], [4]])
        #expect(batches.busyLines == 0)
    }

    /// A caller whose client went away while the batch it leads runs leaves the batch to finish: the
    /// others' writes do not fail with it.
    @Test func theLeadersCancellationDoesNotReachItsBatch() async throws {
        let batches = Batches()
        let runs = Runs(holding: [0, 1])
        let checking: Batches.Run = { key, items in
            let outputs = try await runs.run(key, items)
            try Task.checkCancellation()
            return outputs
        }
        let holder = Task { try await batches.submit(0, on: "t", key: "k", size: 1, run: runs.run) }
        _ = try await eventually("the first batch running") { runs.count == 1 ? true : nil }
        let leader = Task { try await batches.submit(1, on: "t", key: "k", size: 1, run: checking) }
        _ = try await eventually("the leader waiting") { batches.waiting(on: "t") == 1 ? true : nil }
        let other = Task { try await batches.submit(2, on: "t", key: "k", size: 1, run: runs.run) }
        _ = try await eventually("the other waiting") { batches.waiting(on: "t") == 2 ? true : nil }
        runs.open.yield()
        _ = try await eventually("the second batch running") { runs.count == 2 ? true : nil }
        leader.cancel()
        runs.open.yield()
        #expect(try await holder.value == "k0")
        #expect(try await leader.value == "k1")
        #expect(try await other.value == "k2")
        #expect(runs.batches.withLock { $0 } == [[0], [1, 2]])
    }

    @Test func aCallerCancelledWhileWaitingGivesUpItsPlace() async throws {
        let batches = Batches()
        let runs = Runs()
        let holder = Task { try await batches.submit(0, on: "t", key: "k", size: 1, run: runs.run) }
        _ = try await eventually("the first batch running") { runs.count == 1 ? true : nil }
        let cancelled = Task { try await batches.submit(1, on: "t", key: "k", size: 1, run: runs.run) }
        _ = try await eventually("the second caller waiting") { batches.waiting(on: "t") == 1 ? true : nil }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(batches.waiting(on: "t") == 0)
        let third = Task { try await batches.submit(2, on: "t", key: "k", size: 1, run: runs.run) }
        _ = try await eventually("the third caller waiting") { batches.waiting(on: "t") == 1 ? true : nil }
        runs.open.yield()
        #expect(try await holder.value == "k0")
        #expect(try await third.value == "k2")
        #expect(runs.batches.withLock { $0 } == [[0], [2]])
        #expect(batches.busyLines == 0)
    }

    @Test func aCallerCancelledBeforeItAsksDoesNotQueue() async throws {
        let batches = Batches()
        let runs = Runs()
        let holder = Task { try await batches.submit(0, on: "t", key: "k", size: 1, run: runs.run) }
        _ = try await eventually("the first batch running") { runs.count == 1 ? true : nil }
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await batches.submit(1, on: "t", key: "k", size: 1, run: runs.run)
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(batches.waiting(on: "t") == 0)
        runs.open.yield()
        _ = try await holder.value
        #expect(runs.batches.withLock { $0 } == [[0]])
        #expect(batches.busyLines == 0)
    }
}
