import Synchronization

/// At most `limit` writes at a time per task from this process: the others wait here, in the order they
/// came, rather than in PostgreSQL. Every event and message on a task updates the task's row, so writes to
/// one task serialize on its row lock anyway, and waiting in the database costs more once several wait:
/// each waiter holds a connection and a statement snapshot, and once the row is free it re-reads the row's
/// newest version, past the versions that the waiters' snapshots keep from being pruned. Measured with
/// `event/send` on one task at 64 concurrent callers (`hack/bench/rpc`, alternating builds): ungated,
/// PostgreSQL spent 0.26–0.27 ms of CPU per event and the p99 was 53–57 ms; four at a time, 0.17–0.19 ms
/// and 31–33 ms, at the same 2,600–3,000 events/s. One at a time lost the statements' overlap
/// (1,900–2,000/s at 16). The row lock still orders writers across replicas; this only keeps one
/// replica's writers from piling up on it.
final class TaskTurns: Sendable {
    /// How many writes to one task run at once by default (see above).
    static let defaultLimit = 4

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct Line {
        var running = 1
        var waiters: [Waiter] = []
    }

    private struct State {
        /// The tasks with a write running, each with the callers waiting, first come first.
        var lines: [String: Line] = [:]
        var nextId: UInt64 = 0
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int = TaskTurns.defaultLimit) {
        precondition(limit > 0)
        self.limit = limit
    }

    /// Runs `body` once it is the caller's turn on `task`; a caller cancelled while waiting gets
    /// `CancellationError` and gives up its place.
    func withTurn<T: Sendable>(on task: String, _ body: () async throws -> T) async throws -> T {
        try await take(task)
        defer { pass(task) }
        return try await body()
    }

    /// Takes a free turn if there is one and nobody waits for it; false when the caller must wait.
    private func takeFree(_ task: String, _ s: inout State) -> Bool {
        guard var line = s.lines[task] else {
            s.lines[task] = Line()
            return true
        }
        guard line.running < limit, line.waiters.isEmpty else { return false }
        line.running += 1
        s.lines[task] = line
        return true
    }

    private func take(_ task: String) async throws {
        let id = state.withLock { s -> UInt64? in
            if takeFree(task, &s) { return nil }
            s.nextId += 1
            return s.nextId
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { s -> Bool? in
                    // Cancelled before it queued (the handler below then found nothing to remove): no wait.
                    guard !Task.isCancelled else { return nil }
                    // A turn freed since the look above.
                    if takeFree(task, &s) { return true }
                    s.lines[task]!.waiters.append(Waiter(id: id, continuation: continuation))
                    return false
                }
                switch outcome {
                case nil: continuation.resume(throwing: CancellationError())
                case true?: continuation.resume()
                case false?: break
                }
            }
        } onCancel: {
            let removed = state.withLock { s -> Waiter? in
                guard let index = s.lines[task]?.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.lines[task]!.waiters.remove(at: index)
            }
            removed?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Hands the caller's turn on `task` to its first waiter, or frees it.
    private func pass(_ task: String) {
        let next = state.withLock { s -> Waiter? in
            guard var line = s.lines[task] else { return nil }
            defer { s.lines[task] = line.running == 0 ? nil : line }
            guard line.waiters.isEmpty else { return line.waiters.removeFirst() }
            line.running -= 1
            return nil
        }
        next?.continuation.resume()
    }

    /// How many tasks have a write running (tests).
    var busyTasks: Int { state.withLock { $0.lines.count } }

    /// How many callers wait for a turn on `task` (tests).
    func waiting(on task: String) -> Int { state.withLock { $0.lines[task]?.waiters.count ?? 0 } }
}
