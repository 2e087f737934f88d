import ArgumentParser
import NIOCore
import NIOPosix

let command: any ParsableCommand
do {
    command = try Cutover.parseAsRoot()
} catch {
    Cutover.exit(withError: error)
}
// `serve` on PostgreSQL runs Swift concurrency's jobs on the event loop threads that already carry HTTP
// and the database connections. Without this, every database round trip hops from an event loop to the
// concurrency pool and back (two thread wake-ups), which profiles put at the top of a write's CPU: with
// it, a deployment create on PostgreSQL took 0.89 ms of CPU instead of 1.40. On SQLite, whose queries run
// on sqlite-nio's own thread pool, it measured slower (lists 1,721/s instead of 2,108/s, RPC task/create
// 766/s instead of 1,210/s), so it is not installed there. It must happen before the first job is
// enqueued, hence here, after parsing (which enqueues none) and before the first await. Nothing in Cutover
// blocks a thread in async code.
if Cutover.prefersEventLoopExecutor(command) {
    _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
}
await Cutover.run(command)
