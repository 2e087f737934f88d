import NIOPosix

/// The embedded backend: one connection, every unit of work serialized in-process, which is also
/// what makes its read-then-write transactions safe without row locks. Each unit of work runs on the
/// backend's own thread, where its statements are plain function calls into SQLite.
final class SQLiteBackend: DatabaseBackend {
    let dialect = SQLDialectKind.sqlite
    let handle: SQLiteHandle
    /// One thread of its own; it stops when the backend goes away.
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let thread: EventLoopTaskExecutor
    private let gate = AsyncGate()

    init(storage: SQLiteHandle.Storage) throws {
        handle = try SQLiteHandle(storage: storage)
        try handle.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000")
        thread = EventLoopTaskExecutor(group.next())
    }

    deinit { group.shutdownGracefully { _ in } }

    func withTransaction<T: Sendable>(
        rollback: Bool, _ body: @escaping @Sendable (DriverConnection) async throws -> T
    ) async throws -> T {
        try await withSession { connection in
            try await runTransaction(on: connection, begin: Self.begin, rollback: rollback, body)
        }
    }

    private static let begin = Statement("BEGIN IMMEDIATE")

    func withSession<T: Sendable>(_ body: @escaping @Sendable (DriverConnection) async throws -> T) async throws -> T {
        try await withTaskExecutorPreference(thread) { [gate, handle] in
            try await gate.run { try await body(.sqlite(handle)) }
        }
    }

    /// The file is local: an error is never "unreachable".
    func isUnavailable(_ error: any Error) -> Bool { false }

    func close() async throws {
        try await withTaskExecutorPreference(thread) { [gate, handle] in
            try await gate.run { handle.close() }
        }
    }
}

/// A FIFO async mutex: one holder at a time, waiters resumed in arrival order.
actor AsyncGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }
}
