import CutoverConcurrencyHook
import NIOCore
import NIOPosix

/// Runs Swift concurrency's jobs on the event loop threads that already carry HTTP and the database
/// connections, instead of on the concurrency runtime's own thread pool. Without it, every database round
/// trip hops from an event loop to the pool and back (two thread wake-ups), which profiles put at the top
/// of a write's CPU: with it, a deployment create on PostgreSQL took 0.89 ms of CPU instead of 1.40.
///
/// NIO's `NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()` does
/// much the same, but finds the runtime's hook with `dlsym`, which fails in a binary with the Swift runtime
/// linked in (as the image and the benchmarks build it): the hook is then not in the dynamic symbol table,
/// and NIO's installer returns false, so the server silently ran on the pool. Here the linker resolves the
/// hook (`CutoverConcurrencyHook`), however the runtime is linked. And NIO runs each job as if on its event
/// loop's serial executor; here a job runs as the runtime's own pool runs it (`runOnGenericExecutor`).
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
                MultiThreadedEventLoopGroup.singleton.any().execute { runOnGenericExecutor(job) }
            })
            hook.baseAddress!.withMemoryRebound(to: UnsafeMutableRawPointer.self, capacity: 1) {
                slot.pointee = $0.pointee
            }
        }
        isInstalled = true
        return true
    }
}

/// The runtime's `swift_job_run(job, SerialExecutorRef::generic())`, how its own global executor runs a job:
/// the job runs on no actor's executor. `ExecutorJob.runSynchronously(on:)` takes a serial executor, and
/// NIO runs the jobs it is given on its event loop's, so every call into a nonisolated async function then
/// left that executor for the generic one: a job enqueued again, 44 per `GET /healthz` and 9 more per row
/// of a list. On the generic executor a `GET /healthz` is one job and a list of 50 two (counted with a
/// uprobe on the hook). The generic executor's reference is two zero words.
@_silgen_name("swift_job_run")
private func swiftJobRun(_ job: UnownedJob, _ executor: UnownedSerialExecutor)

private let genericExecutor = unsafeBitCast((UInt(0), UInt(0)), to: UnownedSerialExecutor.self)

private func runOnGenericExecutor(_ job: UnownedJob) {
    swiftJobRun(job, genericExecutor)
}
