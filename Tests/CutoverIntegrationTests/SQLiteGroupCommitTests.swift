import Foundation
import Synchronization
import Testing

@testable import CutoverStore

/// On SQLite the transactions that come while a group of them runs join it and commit together, each in a
/// savepoint of its own: a unit that fails, or a dry run, is undone alone, no caller is answered before
/// its group has committed, and a read that waits for the connection ends the group.
@Suite struct SQLiteGroupCommitTests {
    static func backend() throws -> (SQLiteBackend, URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cutover-group-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let backend = try SQLiteBackend(storage: .file(path: directory.appendingPathComponent("db.sqlite").path))
        try backend.handle.execute("CREATE TABLE t (name TEXT NOT NULL UNIQUE)")
        return (backend, directory)
    }

    static func names(_ backend: SQLiteBackend) async throws -> [String] {
        try await backend.withSession { try await $0.rows(Statement("SELECT name FROM t ORDER BY name")).map { try $0.text() } }
    }

    /// Starts a group with one unit that inserts `name` (when given) and holds the group open until
    /// `release` is called; returns once it runs.
    static func holdingAGroup(
        _ backend: SQLiteBackend, inserting name: String?
    ) async throws -> (release: @Sendable () -> Void, unit: Task<Void, any Error>) {
        let (held, release) = AsyncStream<Void>.makeStream()
        let started = Flag()
        let unit = Task {
            try await backend.withTransaction(rollback: false) { connection in
                if let name { try await connection.run(Self.insert, [.text(name)]) }
                started.value.withLock { $0 = true }
                for await _ in held { break }
            }
        }
        _ = try await eventually("the group's first unit running") { started.value.withLock { $0 } ? true : nil }
        return ({ release.yield() }, unit)
    }

    static let insert = Statement("INSERT INTO t (name) VALUES ($1)")
    static let count = Statement("SELECT COUNT(*) FROM t")
    struct Refused: Error {}
    final class Flag: Sendable { let value = Mutex(false) }

    /// What a unit of work did, as its caller saw it.
    enum Outcome: Equatable, Sendable {
        case committed, refused, duplicate, dryRunSaw(Int64)
    }

    @Test func unitsThatCameMeanwhileCommitTogetherAndEachFailureIsItsOwn() async throws {
        let (backend, directory) = try Self.backend()
        defer { try? FileManager.default.removeItem(at: directory) }
        // The group's first unit, held open until the others all wait: they join its group.
        let (release, first) = try await Self.holdingAGroup(backend, inserting: "first")
        let outcomes = try await withThrowingTaskGroup(of: (Int, Outcome).self) { group in
            for i in 0..<30 {
                group.addTask {
                    do {
                        switch i % 10 {
                        case 3:
                            try await backend.withTransaction(rollback: false) { connection in
                                try await connection.run(Self.insert, [.text("refused-\(i)")])
                                throw Refused()
                            }
                        case 5:
                            // The second of these is refused by the unique name, alone.
                            try await backend.withTransaction(rollback: false) { try await $0.run(Self.insert, [.text("twin")]) }
                        case 7:
                            let seen = try await backend.withTransaction(rollback: true) { connection in
                                try await connection.run(Self.insert, [.text("dry-\(i)")])
                                return try await connection.rows(Self.count)[0].int()
                            }
                            return (i, .dryRunSaw(seen))
                        default:
                            try await backend.withTransaction(rollback: false) { try await $0.run(Self.insert, [.text("unit-\(i)")]) }
                        }
                        return (i, .committed)
                    } catch is Refused {
                        return (i, .refused)
                    } catch let failure as SQLiteFailure where failure.message.contains("UNIQUE") {
                        return (i, .duplicate)
                    }
                }
            }
            _ = try await eventually("thirty units waiting") {
                backend.waitingUnits == 30 ? true : nil
            }
            release()
            var all: [Int: Outcome] = [:]
            for try await (i, outcome) in group { all[i] = outcome }
            return all
        }
        try await first.value
        #expect(backend.commits.load(ordering: .relaxed) == 1, "the thirty waiting units joined the group")
        let kept = (0..<30).filter { ![3, 5, 7].contains($0 % 10) }.map { "unit-\($0)" } + ["first", "twin"]
        #expect(try await Self.names(backend) == kept.sorted())
        #expect((0..<30).filter { $0 % 10 == 3 }.allSatisfy { outcomes[$0] == .refused })
        #expect((0..<30).filter { $0 % 10 == 5 }.map { outcomes[$0]! }.sorted { "\($0)" < "\($1)" } == [.committed, .duplicate, .duplicate])
        // Each dry run saw its own row among those of the units before it, and left nothing.
        for i in (0..<30).filter({ $0 % 10 == 7 }) {
            guard case .dryRunSaw(let seen)? = outcomes[i] else {
                Issue.record("dry run \(i): \(String(describing: outcomes[i]))")
                continue
            }
            #expect(seen >= 2)
        }
        try await backend.close()
    }

    /// When SQLite ends the group's transaction by itself (as on a full disk), every unit of the group
    /// fails, the ones that ran before included, and none of their writes is kept; the units still
    /// waiting run in the next group.
    @Test func aTransactionSQLiteEndedFailsTheWholeGroup() async throws {
        let (backend, directory) = try Self.backend()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (release, first) = try await Self.holdingAGroup(backend, inserting: nil)
        let failures = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<6 {
                group.addTask {
                    do {
                        try await backend.withTransaction(rollback: false) { connection in
                            try await connection.run(Self.insert, [.text("unit-\(i)")])
                            // The third unit's transaction ends under it, as SQLite ends one on some errors.
                            if i == 2 { try await connection.execute(sql: "ROLLBACK") }
                        }
                        return false
                    } catch {
                        return true
                    }
                }
                _ = try await eventually("unit \(i) waiting") { backend.waitingUnits == i + 1 ? true : nil }
            }
            release()
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        await #expect(throws: SQLiteFailure.self) { try await first.value }
        #expect(failures == 3)
        #expect(try await Self.names(backend) == ["unit-3", "unit-4", "unit-5"])
        #expect(backend.commits.load(ordering: .relaxed) == 1)
        try await backend.close()
    }

    /// A read that waits for the connection ends the group at the unit running: the read sees that
    /// group committed, and the units that came after it make the next group.
    @Test func aWaitingReadEndsTheGroup() async throws {
        let (backend, directory) = try Self.backend()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (release, first) = try await Self.holdingAGroup(backend, inserting: "first")
        let writes = (0..<5).map { i in
            Task { try await backend.withTransaction(rollback: false) { try await $0.run(Self.insert, [.text("unit-\(i)")]) } }
        }
        _ = try await eventually("five units waiting") { backend.waitingUnits == 5 ? true : nil }
        let read = Task { try await backend.withSession { try await $0.rows(Self.count)[0].int() } }
        _ = try await eventually("the read waiting") { backend.gateHasWaiters ? true : nil }
        release()
        #expect(try await read.value == 1)
        try await first.value
        for write in writes { try await write.value }
        #expect(backend.commits.load(ordering: .relaxed) == 2)
        #expect(try await Self.names(backend).count == 6)
        try await backend.close()
    }

    /// A unit of work that comes after the backend closed fails at once.
    @Test func aUnitAfterCloseFails() async throws {
        let (backend, directory) = try Self.backend()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await backend.close()
        await #expect(throws: SQLiteFailure.self) {
            try await backend.withTransaction(rollback: false) { try await $0.run(Self.insert, [.text("late")]) }
        }
        #expect(backend.waitingUnits == 0)
    }
}
