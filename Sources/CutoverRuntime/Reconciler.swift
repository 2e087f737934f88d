import CutoverCore


/// One kind of object the controller drives toward its desired state, level-triggered: `reconcile`
/// looks at the whole current state of `key`, so running it twice, or after a missed change, is harmless.
public protocol Reconciler: Sendable {
    associatedtype Key: Hashable & Sendable & CustomStringConvertible

    /// The controller's name, the `controller` label of its metrics and its work queue's `name`.
    var name: String { get }

    func reconcile(_ key: Key) async throws -> Requeue

    /// Keys that changed, as they commit.
    func watch() -> AsyncStream<Key>

    /// Every key that may need work: enqueued at start and on every resync, catching anything missed.
    func resyncKeys() async throws -> [Key]

    /// The most keys one `reconcile(batch:)` takes. 1 (the default): keys are reconciled one at a time.
    var batchLimit: Int { get }

    /// Reconciles several keys together, one result per key in their order. Workers call it when more
    /// than one key is ready, so a reconciler can share round trips among keys that pile up; it must leave
    /// each key as `reconcile` alone would.
    func reconcile(batch keys: [Key]) async -> [Result<Requeue, any Error>]
}

extension Reconciler {
    public var batchLimit: Int { 1 }

    public func reconcile(batch keys: [Key]) async -> [Result<Requeue, any Error>] {
        var results: [Result<Requeue, any Error>] = []
        for key in keys {
            do { results.append(.success(try await reconcile(key))) } catch { results.append(.failure(error)) }
        }
        return results
    }
}
