import Logging
import NIOSSL
import PostgresKit
import PostgresNIO
import SQLKit

/// The in-cluster backend: a pooled `PostgresClient`; each unit of work leases one connection.
final class PostgresBackend: DatabaseBackend {
    let dialect = SQLDialectKind.postgres
    let client: PostgresClient
    private let runTask: Task<Void, Never>

    init(configuration: PostgresClient.Configuration, logger: Logger) async {
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let client = client
        // Wait until the pool's run loop has been entered: a lease before that is served, but logged as a
        // warning that confuses operators.
        let (started, signal) = AsyncStream<Void>.makeStream()
        runTask = Task {
            signal.finish()
            await client.run()
        }
        for await _ in started {}
    }

    func withTransaction<T: Sendable>(
        rollback: Bool, _ body: @escaping @Sendable (any SQLDatabase) async throws -> T
    ) async throws -> T {
        try await client.withConnection { connection in
            try await runTransaction(on: connection.sql(), rollback: rollback, body)
        }
    }

    func withSession<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await client.withConnection { connection in try await body(connection.sql()) }
    }

    /// Connection-level failures (refused, closed, pool exhausted or its circuit breaker open), as opposed
    /// to an error the server returned for a statement.
    func isUnavailable(_ error: any Error) -> Bool {
        if let error = error as? PSQLError { return error.code != .server && error.code != .queryCancelled }
        return String(reflecting: type(of: error)).contains("ConnectionPoolError")
    }

    func close() async throws {
        runTask.cancel()
        await runTask.value
    }
}
