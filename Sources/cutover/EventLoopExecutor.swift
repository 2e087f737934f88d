import CutoverConcurrencyHook
import NIOCore
import NIOPosix

/// Runs Swift concurrency's jobs on the event loop threads that already carry HTTP and the database
/// connections, instead of on the concurrency runtime's own thread pool. Without it, every database round
/// trip hops from an event loop to the pool and back (two thread wake-ups), which profiles put at the top
/// of a write's CPU: with it, a deployment create on PostgreSQL took 0.89 ms of CPU instead of 1.40.
///
/// NIO's `NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()` does
/// the same, but finds the runtime's hook with `dlsym`, which fails in a binary with the Swift runtime
/// linked in (as the image and the benchmarks build it): the hook is then not in the dynamic symbol table,
/// and NIO's installer returns false, so the server silently ran on the pool. Here the linker resolves the
/// hook (`CutoverConcurrencyHook`), however the runtime is linked.
enum EventLoopExecutor {
    /// The runtime's type for the hook: the job, and the runtime's own enqueue, unused here.
    private typealias EnqueueHook = @convention(thin) (UnownedJob, @convention(thin) (UnownedJob) -> Void) -> Void

    nonisolated(unsafe) private(set) static var isInstalled = false

    /// Installs the hook; false if one is installed already. Call it once, on the main thread, before the
    /// first job is enqueued (before the first `await`).
    @discardableResult
    static func install() -> Bool {
        let slot = cutover_concurrency_enqueue_hook()
        guard slot.pointee == nil else { return false }
        withUnsafeTemporaryAllocation(of: EnqueueHook.self, capacity: 1) { hook in
            hook.baseAddress!.initialize(to: { job, _ in
                // `any()` is the current event loop when called on one of the group's threads, so a job
                // enqueued from an event loop (a database answer resuming its request) stays on that thread.
                MultiThreadedEventLoopGroup.singleton.any().enqueue(ExecutorJob(job))
            })
            hook.baseAddress!.withMemoryRebound(to: UnsafeMutableRawPointer.self, capacity: 1) {
                slot.pointee = $0.pointee
            }
        }
        isInstalled = true
        return true
    }
}
