import Logging
import SQLKit
import SQLiteKit
import SQLiteNIO

/// The embedded backend: one connection, every unit of work serialized in-process, which is also
/// what makes its read-then-write transactions safe without row locks.
final class SQLiteBackend: DatabaseBackend {
    let dialect = SQLDialectKind.sqlite
    private let connection: SQLiteConnection
    private let gate = AsyncGate()

    init(storage: SQLiteConnection.Storage, logger: Logger) async throws {
        connection = try await SQLiteConnection.open(storage: storage, logger: logger)
        let db = connection.sql()
        for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON",
                       "PRAGMA busy_timeout = 5000"] {
            try await db.raw("\(unsafeRaw: pragma)").run()
        }
    }

    func withTransaction<T: Sendable>(
        rollback: Bool, _ body: @escaping @Sendable (DriverConnection) async throws -> T
    ) async throws -> T {
        try await gate.run { [connection] in
            try await runTransaction(on: .sqlite(connection), begin: Self.begin, rollback: rollback, body)
        }
    }

    private static let begin = Statement("BEGIN IMMEDIATE")

    func withSession<T: Sendable>(_ body: @escaping @Sendable (DriverConnection) async throws -> T) async throws -> T {
        try await gate.run { [connection] in try await body(.sqlite(connection)) }
    }

    /// The file is local: an error is never "unreachable".
    func isUnavailable(_ error: any Error) -> Bool { false }

    func close() async throws {
        try await gate.run { [connection] in try await connection.close() }
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
