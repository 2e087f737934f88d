/// Whether this replica may reconcile. The loop waits on it before it starts working.
public protocol LeaderGate: Sendable {
    /// Returns once this replica leads; throws `CancellationError` if cancelled before.
    func waitForLeadership() async throws
}

/// A single process leads unconditionally (the SQLite mode).
public struct AlwaysLeader: LeaderGate {
    public init() {}
    public func waitForLeadership() async throws {}
}
