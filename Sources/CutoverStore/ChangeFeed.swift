import CutoverCore
import Synchronization

/// A committed write the controller and route caches react to.
public struct Change: Sendable, Hashable {
    public var agentId: String
    public var deploymentId: String?
    /// The written deployment is still `Pending` and not deleted: the controller has work on it.
    public var needsReconcile: Bool

    public init(agentId: String, deploymentId: String?, needsReconcile: Bool = false) {
        self.agentId = agentId
        self.deploymentId = deploymentId
        self.needsReconcile = needsReconcile
    }
}

/// Fans committed changes out to every subscriber. Published after commit only, so a rolled-back or
/// dry-run transaction notifies nobody.
public final class ChangeFeed: Sendable {
    private let subscribers = Mutex<[Int: AsyncStream<Change>.Continuation]>([:])
    private let listeners = Mutex<[@Sendable ([Change]) -> Void]>([])
    private let nextId = Atomic<Int>(0)

    public init() {}

    public func subscribe() -> AsyncStream<Change> {
        let (stream, continuation) = AsyncStream<Change>.makeStream(bufferingPolicy: .unbounded)
        let id = nextId.add(1, ordering: .relaxed).newValue
        subscribers.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.removeValue(forKey: id) }
        }
        return stream
    }

    /// Calls `listener` synchronously on every publish, before the committing caller gets its answer: what
    /// must be current by the committer's very next request (route caches) listens here.
    public func addListener(_ listener: @escaping @Sendable ([Change]) -> Void) {
        listeners.withLock { $0.append(listener) }
    }

    public func publish(_ changes: [Change]) {
        guard !changes.isEmpty else { return }
        for listener in listeners.withLock({ $0 }) { listener(changes) }
        let targets = subscribers.withLock { Array($0.values) }
        for continuation in targets {
            for change in changes { continuation.yield(change) }
        }
    }

    public func finish() {
        let targets = subscribers.withLock { s in
            defer { s.removeAll() }
            return Array(s.values)
        }
        for continuation in targets { continuation.finish() }
    }
}
