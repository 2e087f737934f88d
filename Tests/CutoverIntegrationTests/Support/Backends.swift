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
            let name = "cutover_test_\(UUID().uuidString.prefix(8).lowercased())"
            try await Self.createDatabase(name, base: base)
            return try await Self.openPostgres(name)
        }
    }

    /// Runs `body` on a fresh store (`makeStore`), which is closed after it, whether `body` throws or not
    /// (a store left open when its test throws crashes the test process).
    func withStore(_ body: (any Store) async throws -> Void) async throws {
        let store = try await makeStore()
        do {
            try await body(store)
        } catch {
            try await store.close()
            throw error
        }
        try await store.close()
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

    /// A fresh PostgreSQL database for several replicas; returns its name.
    static func freshPostgresDatabase() async throws -> String {
        guard let base = postgresURL else { throw TestFailure("CUTOVER_TEST_POSTGRES_URL is not set") }
        let name = "cutover_test_\(UUID().uuidString.prefix(8).lowercased())"
        try await createDatabase(name, base: base)
        return name
    }

    /// The URL of `database` on the test cluster, for a `cutover serve` process.
    static func postgresURL(of database: String) throws -> String {
        guard let base = postgresURL, let slash = base.lastIndex(of: "/") else {
            throw TestFailure("CUTOVER_TEST_POSTGRES_URL is not set")
        }
        let query = base[slash...].firstIndex(of: "?").map { String(base[$0...]) } ?? ""
        return base[...slash] + database + query
    }

    static func createDatabase(_ name: String, base: String) async throws {
        guard case .postgres(let host, let port, let user, let password, let database, _) = try DatabaseURL(parsing: base)
        else { return }
        let client = PostgresClient(
            configuration: .init(host: host, port: port, username: user, password: password, database: database, tls: .disable))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
            group.cancelAll()
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
