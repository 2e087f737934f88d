import CutoverCore
import Synchronization

/// The time the controller runtime and the reconcilers read and wait on: the wall clock in `cutover
/// serve`, a `ManualClock` in tests, so deadlines and backoff are tested without sleeping.
public protocol ControllerClock: Sendable {
    func now() -> Timestamp
    /// Returns at `deadline` (at once if it has passed); throws `CancellationError` if cancelled first.
    func sleep(until deadline: Timestamp) async throws
}

public struct SystemClock: ControllerClock {
    public init() {}

    public func now() -> Timestamp { .now() }

    public func sleep(until deadline: Timestamp) async throws {
        let delay = deadline - .now()
        if delay > .zero { try await Task.sleep(for: delay) }
    }
}

/// A clock that moves only when told to.
public final class ManualClock: ControllerClock {
    private struct Sleeper {
        var id: Int
        var deadline: Timestamp
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Timestamp
        var sleepers: [Sleeper] = []
        var nextId = 0
    }

    private let state: Mutex<State>

    public init(_ start: Timestamp = Timestamp(microseconds: 1_800_000_000_000_000)) {
        state = Mutex(State(now: start))
    }

    public func now() -> Timestamp { state.withLock { $0.now } }

    /// How many tasks are sleeping on this clock.
    public var sleepers: Int { state.withLock { $0.sleepers.count } }

    public func advance(by duration: Duration) {
        advance(to: now() + duration)
    }

    /// Moves the time to `time` and wakes every sleeper whose deadline it reaches.
    public func advance(to time: Timestamp) {
        let due = state.withLock { s -> [Sleeper] in
            s.now = max(s.now, time)
            let now = s.now
            let due = s.sleepers.filter { $0.deadline <= now }
            s.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    public func sleep(until deadline: Timestamp) async throws {
        let id = state.withLock { s in
            s.nextId += 1
            return s.nextId
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { s -> Bool in
                    if deadline <= s.now || Task.isCancelled { return true }
                    s.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let sleeper = state.withLock { s -> Sleeper? in
                guard let index = s.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return s.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
        try Task.checkCancellation()
    }
}
