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
}
