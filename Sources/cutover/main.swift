import ArgumentParser
import NIOCore
import NIOPosix

// Swift concurrency's jobs run on the event loop threads that already serve HTTP and PostgreSQL. Without
// this, every database round trip and every proxied call hops from an event loop to the concurrency pool
// and back: two thread wake-ups each, which profiles put at the top of a request's CPU. It has to happen
// before the first job is enqueued, hence here and first. Nothing in Cutover blocks a thread in async
// code (SQLite's blocking calls run on sqlite-nio's own thread pool).
_ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()

await Cutover.runAsMain()
