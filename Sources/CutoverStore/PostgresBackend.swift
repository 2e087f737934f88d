import Logging
import PostgresKit
import PostgresNIO
import SQLKit

/// The in-cluster backend: a `PostgresPool`; each unit of work leases one connection.
final class PostgresBackend: DatabaseBackend {
    let dialect = SQLDialectKind.postgres
    let pool: PostgresPool
    private let logger: Logger

    init(configuration: PostgresConnection.Configuration, maxConnections: Int, logger: Logger) {
        self.logger = logger
        pool = PostgresPool(configuration: configuration, maxConnections: maxConnections, logger: logger)
    }

    func withTransaction<T: Sendable>(
        rollback: Bool, _ body: @escaping @Sendable (DriverConnection) async throws -> T
    ) async throws -> T {
        try await pool.withConnection { [logger] connection in
            try await runTransaction(on: .postgres(connection, logger), rollback: rollback, body)
        }
    }

    func withSession<T: Sendable>(_ body: @escaping @Sendable (DriverConnection) async throws -> T) async throws -> T {
        try await pool.withConnection { [logger] connection in try await body(.postgres(connection, logger)) }
    }

    func isUnavailable(_ error: any Error) -> Bool { PostgresPool.isConnectionFailure(error) }

    func close() async throws { await pool.close() }
}
