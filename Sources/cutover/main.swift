import ArgumentParser

let command: any ParsableCommand
do {
    command = try Cutover.parseAsRoot()
} catch {
    Cutover.exit(withError: error)
}
// `serve` on PostgreSQL runs Swift concurrency's jobs on the event loop threads (`EventLoopExecutor`). On
// SQLite, whose queries run on sqlite-nio's own thread pool, that measured slower (lists 1,721/s instead of
// 2,108/s, RPC task/create 766/s instead of 1,210/s), so it is not installed there. It must happen before
// the first job is enqueued, hence here, after parsing (which enqueues none) and before the first await.
// Nothing in Cutover blocks a thread in async code.
if Cutover.prefersEventLoopExecutor(command) {
    EventLoopExecutor.install()
}
await Cutover.run(command)
