import CutoverCore
import Foundation
import SQLiteNIO
import Synchronization
import Testing

@testable import CutoverStore

/// The embedded backend's own connection to SQLite: statements prepared once, values read back as
/// stored, SQLite's refusals reported, and units of work run on the backend's thread.
@Suite struct SQLiteDriverTests {
    @Test func aStatementIsPreparedOnceAndRunsWithEachCallsValues() throws {
        let handle = try SQLiteHandle(storage: .memory)
        try handle.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, size INTEGER)")
        let insert = "INSERT INTO t (id, name, size) VALUES (?1, ?2, ?3) RETURNING id"
        let values: [(Int, SQLiteData, SQLiteData)] = [
            (1, .text("plain"), .integer(Int(Int64.max))),
            (2, .text(""), .integer(Int(Int64.min))),
            (3, .text("ünï\u{0}cødé ✓"), .null),
            (4, .null, .integer(0)),
        ]
        for (id, name, size) in values {
            #expect(try handle.rows(insert, [.integer(id), name, size]) == [[.integer(id)]])
        }
        #expect(handle.preparedCount == 1, "one INSERT, whatever its values")
        let select = "SELECT name, size FROM t WHERE id = ?1"
        for (id, name, size) in values {
            #expect(try handle.rows(select, [.integer(id)]) == [[name, size]])
        }
        #expect(try handle.rows(select, [.integer(99)]).isEmpty)
        #expect(handle.preparedCount == 2)
    }

    @Test func aRefusedStatementReportsSQLitesMessageAndRunsAgain() throws {
        let handle = try SQLiteHandle(storage: .memory)
        try handle.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
        let insert = "INSERT INTO t (id, name) VALUES (?1, ?2)"
        _ = try handle.rows(insert, [.integer(1), .text("a")])
        #expect {
            _ = try handle.rows(insert, [.integer(2), .text("a")])
        } throws: { error in
            "\(error)".contains("UNIQUE constraint failed: t.name")
        }
        #expect(throws: SQLiteFailure.self) { _ = try handle.rows("SELECT nothing FROM nowhere", []) }
        _ = try handle.rows(insert, [.integer(2), .text("b")])
        #expect(try handle.rows("SELECT count(*) FROM t", []) == [[.integer(2)]])
    }

    @Test func theCacheEmptiesAtItsLimitAndKeepsWorking() throws {
        let handle = try SQLiteHandle(storage: .memory)
        for n in 0..<SQLiteHandle.cacheLimit {
            #expect(try handle.rows("SELECT \(n) + ?1", [.integer(1)]) == [[.integer(n + 1)]])
        }
        #expect(handle.preparedCount == SQLiteHandle.cacheLimit)
        #expect(try handle.rows("SELECT -1", []) == [[.integer(-1)]])
        #expect(handle.preparedCount == 1)
        #expect(try handle.rows("SELECT 0 + ?1", [.integer(5)]) == [[.integer(5)]])
    }

    /// SQLite recompiles a statement whose plan looked at a bound value (a `LIMIT ?`, a parameter compared
    /// with a partial index's condition) each time that value is bound again, unless plans are kept stable.
    @Test func statementsStayCompiledWhateverTheyAreBound() async throws {
        let store = try await Backend.sqlite.makeStore()
        let handle = try #require((store as? SQLStore<SQLiteBackend>)?.backend.handle)
        // The deployments table has partial indexes (`WHERE is_production = 1`, `WHERE expires_at IS NOT NULL`).
        let statements = [
            "SELECT id FROM deployments WHERE agent_id = ?1 AND expires_at IS NULL ORDER BY seq LIMIT ?2 OFFSET ?3",
            "SELECT COALESCE((SELECT docker_image FROM deployments WHERE agent_id = ?1 ORDER BY created_at DESC LIMIT 1), ?2, ?3)",
        ]
        for sql in statements {
            for n in 1...5 {
                _ = try await store.read { tx in try await tx.connection.rows(sql: sql, [.text("agent-\(n)"), .int(Int64(n)), .int(0)]) }
            }
            #expect(try await store.read { _ in handle.recompilations(of: sql) } == 0, "\(sql)")
        }
        try await store.close()
    }

    @Test func aClosedHandleRefusesStatements() throws {
        let handle = try SQLiteHandle(storage: .memory)
        _ = try handle.rows("SELECT 1", [])
        handle.close()
        #expect {
            _ = try handle.rows("SELECT 2", [])
        } throws: { error in
            "\(error)".contains("the database is closed")
        }
    }

    /// A unit of work runs on the backend's thread, not on its caller's; the caller continues where it was.
    @Test func unitsOfWorkRunOnTheBackendsThread() async throws {
        let store = try await Backend.sqlite.makeStore()
        let backend = try #require((store as? SQLStore<SQLiteBackend>)?.backend)
        #expect(!backend.thread.isCurrent)
        let inRead = try await store.read { _ in backend.thread.isCurrent }
        let inTransaction = try await store.transaction(dryRun: false) { _ in backend.thread.isCurrent }
        #expect(inRead && inTransaction)
        #expect(!backend.thread.isCurrent)
        try await store.close()
    }

    /// The WAL of a file is checkpointed by the checkpointer's connection, beside the writer, once it passes
    /// the threshold, and so stays small, though the writer's own automatic checkpoint is off; the last
    /// connection to close removes it.
    @Test func theWALIsCheckpointedBesideTheWriterAndStaysSmall() async throws {
        try await Self.withCheckpointedFile { backend, path in
            let checkpointer = try #require(backend.checkpointer)
            try await Self.writeOverThreeThousandPages(backend)
            #expect(checkpointer.checkpoints.load(ordering: .relaxed) > 0)
            // Its largest extent: every page written (over 4,500) with no checkpoint at all. Here about 200
            // pages, and what is committed while a checkpoint of the checkpointer's ends (up to 1,500 pages
            // seen when the whole suite shares the machine).
            let walBytes = try Self.walBytes(path)
            #expect(walBytes < 2500 * 4096, "the WAL grew to \(walBytes) bytes")
            let count = try await backend.withSession { try await $0.rows(Statement("SELECT COUNT(*) FROM t"))[0].int() }
            #expect(count == 1500)
            try await backend.close()
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        }
    }

    /// When the checkpointer cannot keep up (here its thread is held), the writer checkpoints the WAL
    /// itself once it has passed four times the threshold.
    @Test func theWriterCheckpointsWhenTheCheckpointerFallsBehind() async throws {
        try await Self.withCheckpointedFile { backend, path in
            let checkpointer = try #require(backend.checkpointer)
            let hold = DispatchSemaphore(value: 0)
            checkpointer.loop.execute { hold.wait() }
            try await Self.writeOverThreeThousandPages(backend)
            #expect(checkpointer.checkpoints.load(ordering: .relaxed) == 0)
            hold.signal()
            let walBytes = try Self.walBytes(path)
            #expect(walBytes < 600 * 4096, "the WAL grew to \(walBytes) bytes")
            try await backend.close()
        }
    }

    /// A backend on a file of its own, whose WAL is checkpointed past 50 pages, with a table `t`.
    static func withCheckpointedFile(_ body: (SQLiteBackend, String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cutover-wal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("db.sqlite").path
        let backend = try SQLiteBackend(storage: .file(path: path), checkpointThreshold: 50)
        try backend.handle.execute("CREATE TABLE t (name TEXT NOT NULL, pad TEXT NOT NULL)")
        try await body(backend, path)
    }

    /// 1,500 commits of a row of most of a page each.
    static func writeOverThreeThousandPages(_ backend: SQLiteBackend) async throws {
        let insert = Statement("INSERT INTO t (name, pad) VALUES ($1, $2)")
        let pad = String(repeating: "x", count: 3000)
        for i in 0..<1500 {
            try await backend.withTransaction(rollback: false) { try await $0.run(insert, [.text("row \(i)"), .text(pad)]) }
        }
    }

    static func walBytes(_ path: String) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int)
    }
}
