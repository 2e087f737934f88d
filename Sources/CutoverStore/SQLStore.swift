import CutoverCore
import Logging
import PostgresNIO
import SQLKit

/// What differs between PostgreSQL and SQLite below the SQL: how a session and a transaction are had.
protocol DatabaseBackend: Sendable {
    var dialect: SQLDialectKind { get }
    /// Runs `body` on one session between BEGIN and COMMIT (or ROLLBACK when `rollback` or on error).
    func withTransaction<T: Sendable>(
        rollback: Bool, _ body: @escaping @Sendable (DriverConnection) async throws -> T
    ) async throws -> T
    func withSession<T: Sendable>(_ body: @escaping @Sendable (DriverConnection) async throws -> T) async throws -> T
    func close() async throws
    func isUnavailable(_ error: any Error) -> Bool
}

/// The one `Store` implementation: the same SQL on either backend.
final class SQLStore<Backend: DatabaseBackend>: Store {
    let backend: Backend
    let changes = ChangeFeed()
    let logger: Logger
    /// Names this process in its change notifications, so its listener skips its own.
    let origin = Identifiers.uuid()

    init(backend: Backend, logger: Logger) {
        self.backend = backend
        self.logger = logger
    }

    func transaction<T: Sendable>(
        dryRun: Bool, _ body: @escaping @Sendable (StoreTransaction) async throws -> T
    ) async throws -> T {
        let dialect = backend.dialect
        let origin = origin
        let (value, changes) = try await backend.withTransaction(rollback: dryRun) { connection in
            let tx = StoreTransaction(connection: connection, dialect: dialect, origin: origin)
            let value = try await body(tx)
            let changes = tx.changes
            // Notifications are delivered to the other replicas if, and only if, this transaction commits.
            let notify = dialect == .postgres && !dryRun ? ChangeNotifications.payloads(changes, origin: origin) : []
            try await tx.finish(notifications: notify)
            return (value, changes)
        }
        if !dryRun { self.changes.publish(changes) }
        return value
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        try await autocommit(body)
    }

    func autocommit<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        let dialect = backend.dialect
        let origin = origin
        let (value, changes) = try await backend.withSession { connection in
            let tx = StoreTransaction(connection: connection, dialect: dialect, origin: origin)
            let value = try await body(tx)
            try await tx.finish(notifications: [])
            return (value, tx.changes)
        }
        self.changes.publish(changes)
        return value
    }

    func migrate() async throws -> [Int] {
        let dialect = backend.dialect
        return try await backend.withTransaction(rollback: false) { connection in
            if dialect == .postgres {
                // Replicas starting together apply each migration once.
                try await connection.execute(sql: "SELECT pg_advisory_xact_lock(7243830001)")
            }
            try await connection.execute(
                sql: "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            let applied = Set(try await connection.rows(StoreStatements.appliedVersions).map { try $0.int() })
            var done: [Int] = []
            for migration in Migrations.all where !applied.contains(Int64(migration.version)) {
                for statement in migration.statements(for: dialect) {
                    try await connection.execute(sql: statement)
                }
                try await connection.run(
                    StoreStatements.recordMigration,
                    [.int(Int64(migration.version)), .text(migration.name), .time(Timestamp.now())])
                done.append(migration.version)
            }
            return done
        }
    }

    func isReady() async -> Bool {
        do {
            return try await backend.withSession { connection in
                let row = try await connection.rows(StoreStatements.schemaVersion).first
                var reader = row?.reader
                return try reader?.optionalInt() == Int64(Migrations.latest)
            }
        } catch {
            return false
        }
    }

    var runsOneStatementUnits: Bool { backend.dialect == .postgres }

    func isUnavailable(_ error: any Error) -> Bool { backend.isUnavailable(error) }

    var postgresConfiguration: PostgresConnection.Configuration? { (backend as? PostgresBackend)?.pool.configuration }

    func changeListener(logger: Logger, onReconnect: @escaping @Sendable () -> Void) -> ChangeListener? {
        guard let postgres = backend as? PostgresBackend else { return nil }
        return ChangeListener(
            configuration: postgres.pool.configuration, feed: changes, origin: origin, logger: logger,
            onReconnect: onReconnect)
    }

    func close() async throws {
        changes.finish()
        try await backend.close()
    }
}

/// Runs BEGIN, `body`, then COMMIT, or ROLLBACK when asked to or when anything throws.
func runTransaction<T: Sendable>(
    on connection: DriverConnection, rollback: Bool,
    _ body: @escaping @Sendable (DriverConnection) async throws -> T
) async throws -> T {
    try await connection.run(StoreStatements.begin)
    let value: T
    do {
        value = try await body(connection)
    } catch {
        try? await connection.run(StoreStatements.rollback)
        throw error
    }
    try await connection.run(rollback ? StoreStatements.rollback : StoreStatements.commit)
    return value
}

enum StoreStatements {
    /// Readiness's one round trip: the applied schema version.
    static let schemaVersion = Statement("SELECT MAX(version) FROM schema_migrations")
    static let appliedVersions = Statement("SELECT version FROM schema_migrations")
    static let recordMigration = Statement(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
    static let begin = Statement("BEGIN")
    static let commit = Statement("COMMIT")
    static let rollback = Statement("ROLLBACK")
}
