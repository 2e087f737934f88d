import Logging
import PostgresNIO
import Testing

@testable import CutoverStore

/// Cutover's own PostgreSQL connection pool.
@Suite struct PostgresPoolTests {
    static func pool(maxConnections: Int) throws -> PostgresPool {
        guard let base = Backend.postgresURL,
            case .postgres(let host, let port, let user, let password, let database, _) = try DatabaseURL(parsing: base)
        else { throw TestFailure("CUTOVER_TEST_POSTGRES_URL is not a postgres:// URL") }
        let configuration = PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: .disable)
        return PostgresPool(
            configuration: configuration, maxConnections: maxConnections, leaseTimeout: .seconds(2), logger: Logger(label: "test"))
    }

    /// A caller that leaves while its connection opens (a shutdown, a lost leadership) is told it was
    /// cancelled, not that the database is unavailable, and its slot goes back to the pool.
    @Test(arguments: Backend.postgresOnly)
    func aConnectCancelledByItsCallerGivesTheSlotBack(_ backend: Backend) async throws {
        let pool = try Self.pool(maxConnections: 1)
        let leaving = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await pool.withConnection { _ in }
        }
        await #expect(throws: CancellationError.self) { try await leaving.value }
        // The pool's one slot is free again: this lease opens a connection at once rather than waiting out
        // the lease timeout.
        let one = try await pool.withConnection { connection in
            try await connection.query("SELECT 1", logger: Logger(label: "test")).collect().first?.decode(Int.self)
        }
        #expect(one == 1)
        await pool.close()
    }
}
