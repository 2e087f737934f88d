import Synchronization
import Testing

@testable import CutoverAPI

/// A bounded number of writes at a time per task from one process, the others in the order they came.
@Suite struct TaskTurnsTests {
    /// Records, under a lock, who is inside and the order they entered.
    final class Log: Sendable {
        let state = Mutex<(inside: Int, most: Int, order: [Int])>((0, 0, []))
        func enter(_ i: Int) {
            state.withLock { s in
                s.inside += 1
                s.most = max(s.most, s.inside)
                s.order.append(i)
            }
        }
        func leave() { state.withLock { $0.inside -= 1 } }
    }

    @Test func callersOfOneTaskTakeTurnsInTheOrderTheyCame() async throws {
        let turns = TaskTurns(limit: 1)
        let log = Log()
        let (opened, open) = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The first holds the turn until the others are all waiting.
            group.addTask {
                try await turns.withTurn(on: "t") {
                    log.enter(0)
                    for await _ in opened { break }
                    log.leave()
                }
            }
            _ = try await eventually("the first caller inside") { log.state.withLock { $0.order.count } == 1 ? true : nil }
            for i in 1...5 {
                group.addTask { try await turns.withTurn(on: "t") { log.enter(i); await Task.yield(); log.leave() } }
                // Each caller queues before the next is started, so the order they came is 1, 2, ...
                _ = try await eventually("caller \(i) waiting") { turns.waiting(on: "t") == i ? true : nil }
            }
            // Another task's turn is free meanwhile.
            let other = try await turns.withTurn(on: "u") { "free" }
            #expect(other == "free")
            open.yield()
            try await group.waitForAll()
        }
        let final = log.state.withLock { $0 }
        #expect(final.order == [0, 1, 2, 3, 4, 5])
        #expect(final.most == 1)
        #expect(turns.busyTasks == 0)
    }

    @Test func aLimitOfTwoLetsTwoInAndQueuesTheThird() async throws {
        let turns = TaskTurns(limit: 2)
        let log = Log()
        let gates = (0..<2).map { _ in AsyncStream<Void>.makeStream() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<2 {
                let opened = gates[i].stream
                group.addTask { try await turns.withTurn(on: "t") { log.enter(i); for await _ in opened { break }; log.leave() } }
            }
            _ = try await eventually("two inside") { log.state.withLock { $0.inside } == 2 ? true : nil }
            group.addTask { try await turns.withTurn(on: "t") { log.enter(2); log.leave() } }
            _ = try await eventually("the third waiting") { turns.waiting(on: "t") == 1 ? true : nil }
            #expect(log.state.withLock { $0.order.count } == 2)
            for gate in gates { gate.continuation.finish() }
            try await group.waitForAll()
        }
        let final = log.state.withLock { $0 }
        #expect(final.order.last == 2)
        #expect(final.most == 2)
        #expect(turns.busyTasks == 0)
    }

    @Test func aCallerCancelledWhileWaitingGivesUpItsPlace() async throws {
        let turns = TaskTurns(limit: 1)
        let (opened, open) = AsyncStream<Void>.makeStream()
        let holder = Task { try await turns.withTurn(on: "t") { for await _ in opened { break } } }
        _ = try await eventually("the turn taken") { turns.busyTasks == 1 ? true : nil }
        let cancelled = Task { try await turns.withTurn(on: "t") { "ran" } }
        _ = try await eventually("the second caller waiting") { turns.waiting(on: "t") == 1 ? true : nil }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(turns.waiting(on: "t") == 0)
        let third = Task { try await turns.withTurn(on: "t") { "ran" } }
        _ = try await eventually("the third caller waiting") { turns.waiting(on: "t") == 1 ? true : nil }
        open.yield()
        try await holder.value
        #expect(try await third.value == "ran")
        #expect(turns.busyTasks == 0)
    }

    @Test func aCallerCancelledBeforeItAsksDoesNotQueue() async throws {
        let turns = TaskTurns(limit: 1)
        let (opened, open) = AsyncStream<Void>.makeStream()
        let holder = Task { try await turns.withTurn(on: "t") { for await _ in opened { break } } }
        _ = try await eventually("the turn taken") { turns.busyTasks == 1 ? true : nil }
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await turns.withTurn(on: "t") { "ran" }
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(turns.waiting(on: "t") == 0)
        open.yield()
        try await holder.value
        #expect(turns.busyTasks == 0)
    }
}
