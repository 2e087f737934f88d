import Logging
import NIOCore
import NIOPosix
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

    /// `serve` runs its requests on the event loops. A lease made on one gets a connection on that loop,
    /// whose answers then resume the request on the thread it already runs on; a loop without an idle
    /// connection of its own opens one while there is room, and takes another loop's only when there is not.
    @Test(arguments: Backend.postgresOnly)
    func aLeaseOnAnEventLoopGetsAConnectionOnThatLoop(_ backend: Backend) async throws {
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        try #require(loops.count >= 2, "needs two event loops")
        let (a, b) = (loops[0], loops[1])
        let pool = try Self.pool(maxConnections: 2)
        /// The connection a lease made on `loop` got.
        func lease(on loop: any EventLoop) async throws -> PostgresConnection {
            try await withTaskExecutorPreference(EventLoopTaskExecutor(loop)) {
                try await pool.withConnection { $0 }
            }
        }
        let first = try await lease(on: a)
        #expect(first.eventLoop === a)
        let second = try await lease(on: b)
        #expect(second.eventLoop === b, "opened on b rather than taking a's idle connection")
        #expect(try await lease(on: a) === first)
        #expect(try await lease(on: b) === second)
        // The pool is full: a third loop's lease (here a's, with only b's connection idle) takes what is idle.
        let busy = try await withTaskExecutorPreference(EventLoopTaskExecutor(a)) {
            try await pool.withConnection { held in
                (try await lease(on: a), held)
            }
        }
        #expect(busy.1 === first && busy.0 === second)
        await pool.close()
    }
}

