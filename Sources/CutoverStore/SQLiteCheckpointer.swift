import NIOCore
import NIOPosix
import Synchronization

/// Checkpoints the embedded database's WAL on a connection and a thread of its own. SQLite's automatic
/// checkpoint runs inside the commit that takes the WAL past 1,000 pages: that commit, and every unit of
/// work queued behind the one writer, waits while the pages are copied into the database file and the file
/// is synced. Here the writer only reports the WAL's size after each commit (a hook, which also turns the
/// automatic checkpoint off), and once it has grown past `threshold` pages a passive checkpoint runs beside
/// the writer, which it does not block; the writer starts the WAL over at its first transaction after a
/// checkpoint that copied it all. A checkpoint that could not (the writer appended meanwhile) runs again
/// after the next commit, which finds the WAL still past the threshold. Under writes without a pause every
/// checkpoint ends inside one of the writer's transactions, and the WAL would never start over: past four
/// times the threshold the writer checkpoints what is left itself, between its transactions, as SQLite's
/// own checkpoint does (once a checkpoint of the checkpointer's under way has ended: none follows it then).
final class SQLiteCheckpointer: Sendable {
    /// SQLite's own default for the automatic checkpoint.
    static let defaultThreshold = 1000

    let threshold: Int
    private let handle: SQLiteHandle
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    /// Its thread.
    var loop: any EventLoop { group.next() }
    /// A checkpoint is queued or running.
    private let scheduled = Atomic<Bool>(false)
    /// Checkpoints run so far (tests).
    let checkpoints = Atomic<Int>(0)

    init(path: String, threshold: Int = defaultThreshold) throws {
        handle = try SQLiteHandle(storage: .file(path: path))
        // Reads the database, which opens the WAL on this connection: until then it checkpoints nothing.
        try handle.execute("PRAGMA journal_mode = WAL")
        self.threshold = threshold
    }

    deinit { group.shutdownGracefully { _ in } }

    /// Called on the writer's thread after each commit, with the WAL's size in pages; true when the writer
    /// is to checkpoint it now.
    func walGrew(to pages: Int) -> Bool {
        if pages >= threshold * 4 { return true }
        guard pages >= threshold,
            scheduled.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return false }
        loop.execute { [self] in
            // A failure (the file gone, the disk full) is the writer's to report; this tries again later.
            if handle.checkpointPassively() { checkpoints.add(1, ordering: .relaxed) }
            scheduled.store(false, ordering: .releasing)
        }
        return false
    }

    /// Closes its connection once a checkpoint under way has finished.
    func close() async {
        try? await loop.submit { [handle] in handle.close() }.get()
    }
}
