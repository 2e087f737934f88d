import Foundation
import PostgresNIO
import Testing

@testable import CutoverStore

/// Statements on PostgreSQL run as named prepared statements, one name per text and parameter types.
@Suite struct PreparedStatementTests {
    @Test func eachShapeHasOneNameAndNamesRunOut() {
        let names = PreparedStatements(capacity: 3)
        let text = PreparedStatements.Shape(sql: "SELECT $1", types: [.text])
        let null = PreparedStatements.Shape(sql: "SELECT $1", types: [.null])
        let int = PreparedStatements.Shape(sql: "SELECT $1", types: [.int8])
        let first = names.name(for: text)
        #expect(first != nil)
        #expect(names.name(for: text) == first)
        // A NULL where another call binds text is another statement: the server infers its type.
        #expect(names.name(for: null) != nil)
        #expect(names.name(for: null) != first)
        #expect(names.name(for: int) != nil)
        #expect(Set([names.name(for: text), names.name(for: null), names.name(for: int)]).count == 3)
        // Full: a new shape runs unnamed; the named ones keep their names.
        #expect(names.name(for: .init(sql: "SELECT 2", types: [])) == nil)
        #expect(names.name(for: text) == first)
        // A failed preparation moves its shape to a new name; a stale report moves nothing.
        names.rename(text, from: first!)
        let second = names.name(for: text)
        #expect(second != nil && second != first)
        names.rename(text, from: first!)
        #expect(names.name(for: text) == second)
    }

    /// postgres-nio keeps a failed preparation for the connection's life. One that failed only because its
    /// transaction had already failed must not break the statement on the connection for good.
    @Test(arguments: Backend.postgresOnly)
    func aStatementFirstPreparedInAFailedTransactionRunsLater(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        // A text no other test runs, so this test prepares it first.
        let probe = "SELECT 'prepared-\(UUID().uuidString)' || $1"
        await #expect(throws: PSQLError.self) {
            try await store.transaction(dryRun: false) { tx in
                do { _ = try await tx.connection.rows(Statement("SELECT 1 / $1"), [.int(0)]) } catch {}
                _ = try await tx.connection.rows(Statement(probe), [.text("x")])
            }
        }
        // Units run one after the other here, so this one leases the connection the failure happened on.
        let value = try await store.read { tx in try await tx.connection.rows(Statement(probe), [.text("x")]).first?.text() }
        #expect(value?.hasSuffix("x") == true)
        try await Backend.discard(store)
    }
}
