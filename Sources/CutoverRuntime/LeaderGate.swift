import Synchronization

/// Whether this replica may reconcile. Loops run their work only inside a leadership term.
public protocol LeaderGate: Sendable {
    /// Runs `term` each time this replica becomes leader, and cancels it the moment leadership is lost
    /// (the term must then return promptly). Returns when the calling task is cancelled.
    func whileLeading(_ term: @escaping @Sendable () async -> Void) async
}

/// A single process leads unconditionally (the SQLite mode): one term, for as long as it runs.
public struct AlwaysLeader: LeaderGate {
    public init() {}
    public func whileLeading(_ term: @escaping @Sendable () async -> Void) async { await term() }
}

/// A leadership that something else decides (an elector, a test): `whileLeading` runs a term each time
/// it is set leading and cancels the term when it is unset.
public final class Leadership: LeaderGate {
    private struct State {
        var leading = false
        var waiters: [Int: (wanted: Bool, continuation: CheckedContinuation<Bool, Never>)] = [:]
        var nextId = 0
        var activeTerms = 0
    }

    private let state = Mutex(State())

    public init(leading: Bool = false) {
        state.withLock { $0.leading = leading }
    }

    public var isLeading: Bool { state.withLock { $0.leading } }
    /// Terms still running: an elector that steps down waits for them before it lets another replica lead.
    public var activeTerms: Int { state.withLock { $0.activeTerms } }

    public func set(leading: Bool) {
        let woken = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            guard s.leading != leading else { return [] }
            s.leading = leading
            let due = s.waiters.filter { $0.value.wanted == leading }
            for id in due.keys { s.waiters[id] = nil }
            return due.values.map(\.continuation)
        }
        for continuation in woken { continuation.resume(returning: true) }
    }

    public func whileLeading(_ term: @escaping @Sendable () async -> Void) async {
        while !Task.isCancelled {
            guard await wait(until: true) else { return }
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    self.state.withLock { $0.activeTerms += 1 }
                    await term()
                    self.state.withLock { $0.activeTerms -= 1 }
                }
                group.addTask { _ = await self.wait(until: false) }
                await group.next()
                group.cancelAll()
            }
        }
    }

    /// Returns true once leadership is `wanted`, false if the task is cancelled first.
    private func wait(until wanted: Bool) async -> Bool {
        let id = state.withLock { s in
            s.nextId += 1
            return s.nextId
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = state.withLock { s -> Bool? in
                    if s.leading == wanted { return true }
                    if Task.isCancelled { return false }
                    s.waiters[id] = (wanted, continuation)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(returning: false)
        }
    }
}
