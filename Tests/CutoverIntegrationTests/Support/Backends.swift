import CutoverStore
import Foundation
import Logging
import PostgresNIO

/// The storage backends every behavioural test runs against. PostgreSQL joins when hack/test.sh has
/// started one (`CUTOVER_TEST_POSTGRES_URL`).
enum Backend: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite, postgres

    static let postgresURL = ProcessInfo.processInfo.environment["CUTOVER_TEST_POSTGRES_URL"]

    static var all: [Backend] { postgresURL == nil ? [.sqlite] : [.sqlite, .postgres] }
    static var postgresOnly: [Backend] { postgresURL == nil ? [] : [.postgres] }

    var description: String { rawValue }

    /// A fresh, migrated, empty store: an in-memory SQLite database or a new PostgreSQL database.
    func makeStore() async throws -> any Store {
        let logger = Logger(label: "test")
        switch self {
        case .sqlite:
            let store = try await StoreFactory.open(.sqliteMemory, logger: logger)
            try await store.migrate()
            return store
        case .postgres:
            guard let base = Self.postgresURL else { throw TestFailure("CUTOVER_TEST_POSTGRES_URL is not set") }
            let name = Self.newDatabaseName()
            try await Self.createDatabase(name, base: base)
            do {
                return try await Self.openPostgres(name)
            } catch {
                await Self.dropDatabase(name)
                throw error
            }
        }
    }

    /// Runs `body` on a fresh store (`makeStore`), which is closed after it, whether `body` throws or not
    /// (a store left open when its test throws crashes the test process), and its database dropped.
    func withStore(_ body: (any Store) async throws -> Void) async throws {
        let store = try await makeStore()
        do {
            try await body(store)
        } catch {
            try? await Self.discard(store)
            throw error
        }
        try await Self.discard(store)
    }

    /// Closes a store from `makeStore` and drops its database, even when closing fails.
    static func discard(_ store: any Store) async throws {
        do {
            try await store.close()
        } catch {
            await dropDatabase(of: store)
            throw error
        }
        await dropDatabase(of: store)
    }

    /// Another replica's store on the database of `store` (PostgreSQL only).
    static func openPostgres(_ database: String) async throws -> any Store {
        guard let base = postgresURL,
            case .postgres(let host, let port, let user, let password, _, let tls) = try DatabaseURL(parsing: base)
        else { throw TestFailure("CUTOVER_TEST_POSTGRES_URL is not a postgres:// URL") }
        let url = DatabaseURL.postgres(host: host, port: port, user: user, password: password, database: database, tls: tls)
        let store = try await StoreFactory.open(url, maxConnections: 6, logger: Logger(label: "test"))
        try await store.migrate()
        return store
    }

    /// Runs `body` with the name of a fresh PostgreSQL database for several replicas, and drops the
    /// database after it (once `body` has stopped everything that uses it).
    static func withFreshPostgresDatabase(_ body: (String) async throws -> Void) async throws {
        guard let base = postgresURL else { throw TestFailure("CUTOVER_TEST_POSTGRES_URL is not set") }
        let name = Self.newDatabaseName()
        try await createDatabase(name, base: base)
        do {
            try await body(name)
        } catch {
            await dropDatabase(name)
            throw error
        }
        await dropDatabase(name)
    }

    /// Drops the database of a store from `makeStore` once its test is done with it (the store closed and
    /// everything else on it stopped): each is a copy of PostgreSQL's template of about 8 MB, and a run of
    /// the suite makes some 220, which a long-lived server would otherwise keep. Nothing on SQLite.
    static func dropDatabase(of store: any Store) async {
        guard let name = store.postgresConfiguration?.database else { return }
        await dropDatabase(name)
    }

    /// Drops `name` if this suite made it (`cutover_test_…`), even if a connection to it is still open.
    /// A database that cannot be dropped stays; no test depends on it being gone.
    static func dropDatabase(_ name: String) async {
        guard name.hasPrefix("cutover_test_"), let base = postgresURL else { return }
        try? await onServer(base, "DROP DATABASE \(name) WITH (FORCE)")
    }

    /// The URL of `database` on the test cluster, for a `cutover serve` process.
    static func postgresURL(of database: String) throws -> String {
        guard let base = postgresURL, let slash = base.lastIndex(of: "/") else {
            throw TestFailure("CUTOVER_TEST_POSTGRES_URL is not set")
        }
        let query = base[slash...].firstIndex(of: "?").map { String(base[$0...]) } ?? ""
        return base[...slash] + database + query
    }

    private static func newDatabaseName() -> String { "cutover_test_\(UUID().uuidString.prefix(8).lowercased())" }

    static func createDatabase(_ name: String, base: String) async throws {
        try await onServer(base, "CREATE DATABASE \(name)")
    }

    /// Runs `sql` on the database of `base`, on a connection of its own.
    private static func onServer(_ base: String, _ sql: String) async throws {
        guard case .postgres(let host, let port, let user, let password, let database, _) = try DatabaseURL(parsing: base)
        else { return }
        let client = PostgresClient(
            configuration: .init(host: host, port: port, username: user, password: password, database: database, tls: .disable))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            try await client.query(PostgresQuery(unsafeSQL: sql))
            group.cancelAll()
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
