import ArgumentParser

let command: any ParsableCommand
do {
    command = try Cutover.parseAsRoot()
} catch {
    Cutover.exit(withError: error)
}
// `serve` on PostgreSQL runs Swift concurrency's jobs on the event loop threads (`EventLoopExecutor`). On
// SQLite it is not installed: each unit of work there runs on the backend's own thread anyway, and with the
// hook the control-plane benchmark showed no clear gain in CPU per request (registrations 0.57–0.58 ms
// against 0.55–0.69, creates 0.26–0.32 against 0.26) and a longer tail for creates (p99 49–115 ms against
// 13–20); measured again once the hook ran jobs on the generic executor, still none (server CPU per
// request at 16 clients, with the hook against without: creates 0.23–0.29 ms against 0.23–0.25, lists
// 0.31–0.32 against 0.27–0.32, registrations 0.33–0.39 against 0.34–0.44). It must happen before the
// first job is enqueued, hence here, after parsing (which enqueues none) and before the first await. No
// event loop thread blocks in async code: SQLite's file I/O happens on the backend's thread.
if Cutover.prefersEventLoopExecutor(command) {
    EventLoopExecutor.install()
}
await Cutover.run(command)
