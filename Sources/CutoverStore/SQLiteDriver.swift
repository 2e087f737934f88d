import CutoverSQLiteSettings
import NIOCore
import NIOPosix
import SQLiteNIO
// sqlite-nio's C target: not a product of that package, but visible to its dependents, as SQLiteNIO's own
// interface imports it.
import VaporCSQLite

/// The embedded database's connection: SQLite's C library (the copy sqlite-nio builds) called directly,
/// synchronously, by whichever thread runs the unit of work, with each statement prepared once.
///
/// sqlite-nio's own connection hands every statement to its thread pool and back (two thread wake-ups) and
/// compiles the statement's text anew each time; with several statements to every write, that was most of
/// the embedded backend's CPU (a deployment create took 0.58–0.67 ms of server CPU, 0.24–0.26 here). Here `SQLiteBackend` moves a whole unit of work onto one thread of its
/// own (`SQLiteBackend.thread`) instead, so the work pays one hop there and one back, and keeps the file's I/O
/// off the event loops. Units of work are serialized by the backend, never run concurrently on this.
final class SQLiteHandle: @unchecked Sendable {
    // @unchecked: the handle and the statement cache are only touched by the unit of work holding the
    // backend's gate, one at a time. For the same reason the connection is opened without SQLite's own
    // mutex (`NOMUTEX`): in serialized mode every call, each cell's read included, took and released it,
    // 9–10 % of the server's CPU in a profile of lists of 50.
    private var db: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    /// Told the WAL's size after each commit; kept, with the hook, until the handle closes.
    private var walObserver: SQLiteCheckpointer?

    /// Statements kept prepared; past this the cache is emptied rather than grown (run-time statements
    /// such as filtered lists have a bounded but not small number of texts).
    static let cacheLimit = 256

    enum Storage: Sendable, Equatable {
        case memory
        case file(path: String)
    }

    private static let initialize: Void = { _ = sqlite_nio_sqlite3_initialize() }()

    init(storage: Storage) throws(SQLiteFailure) {
        Self.initialize
        let path = switch storage {
        case .memory: ":memory:"
        case .file(let path): path
        }
        let flags = SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
            | SQLITE_OPEN_EXRESCODE
        var code = sqlite_nio_sqlite3_open_v2(path, &db, flags, nil)
        if code == SQLITE_OK, let db {
            // Statements stay prepared, so their plans must not depend on the values bound (as PostgreSQL's
            // generic plans do not): otherwise a `LIMIT ?1` or a parameter compared with a partial index's
            // condition made SQLite compile the statement again on every run (measured: every registration's
            // deployment insert and every list).
            code = cutover_sqlite_enable_stable_plans(UnsafeMutableRawPointer(db))
        }
        guard code == SQLITE_OK else {
            let failure = SQLiteFailure(code: code, message: "cannot open \(path): \(Self.message(db, code))")
            sqlite_nio_sqlite3_close_v2(db)
            db = nil
            throw failure
        }
    }

    deinit { close() }

    /// How many statements are kept prepared.
    var preparedCount: Int { statements.count }

    /// How many times SQLite compiled the prepared `sql` again since it was prepared (nil if it is not).
    func recompilations(of sql: String) -> Int32? {
        statements[sql].map { sqlite_nio_sqlite3_stmt_status($0, SQLITE_STMTSTATUS_REPREPARE, 0) }
    }

    /// Runs `sql` with `binds` (`?1`, `?2`, …) and returns its rows, each as its columns in order.
    func rows(_ sql: String, _ binds: [SQLiteData]) throws(SQLiteFailure) -> [[SQLiteData]] {
        let statement = try prepared(sql)
        defer {
            sqlite_nio_sqlite3_reset(statement)
            sqlite_nio_sqlite3_clear_bindings(statement)
        }
        for (index, bind) in binds.enumerated() {
            try check(bind.bind(to: statement, at: Int32(index + 1)))
        }
        let columns = sqlite_nio_sqlite3_column_count(statement)
        var rows: [[SQLiteData]] = []
        while true {
            let code = sqlite_nio_sqlite3_step(statement)
            if code == SQLITE_DONE { return rows }
            guard code == SQLITE_ROW else { throw failure(code) }
            var row: [SQLiteData] = []
            row.reserveCapacity(Int(columns))
            for column in 0..<columns { row.append(Self.value(statement, column)) }
            rows.append(row)
        }
    }

    /// Runs `sql`, which may hold several statements and no parameters (schema changes, settings).
    func execute(_ sql: String) throws(SQLiteFailure) {
        try check(sqlite_nio_sqlite3_exec(db, sql, nil, nil, nil))
    }

    /// Whether a transaction is open (SQLite ends one by itself on some errors).
    var inTransaction: Bool { db != nil && sqlite_nio_sqlite3_get_autocommit(db) == 0 }

    /// After each commit, `checkpointer` is told the WAL's size in pages, and this connection checkpoints
    /// when it says so. Registering the hook turns off SQLite's automatic checkpoint on this connection.
    func reportWALSize(to checkpointer: SQLiteCheckpointer) {
        guard let db else { return }
        walObserver = checkpointer
        _ = sqlite_nio_sqlite3_wal_hook(db, { context, db, _, pages in
            if Unmanaged<SQLiteCheckpointer>.fromOpaque(context!).takeUnretainedValue().walGrew(to: Int(pages)) {
                // Busy while a checkpoint of the checkpointer's runs (none follows it then): the next
                // commit tries again. Not waiting for it keeps the writer from stalling behind its sync.
                _ = SQLiteHandle.checkpointPassively(db)
            }
            return SQLITE_OK
        }, Unmanaged.passUnretained(checkpointer).toOpaque())
    }

    /// Copies what it can of the WAL into the file, without waiting for a writer or a checkpoint under
    /// way; whether it ran on a WAL (a connection that has not read the database yet has none open, and
    /// checkpoints nothing).
    func checkpointPassively() -> Bool { db.map { Self.checkpointPassively($0) } ?? false }

    private static func checkpointPassively(_ db: OpaquePointer?) -> Bool {
        var walPages: Int32 = -1
        let code = sqlite_nio_sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_PASSIVE, &walPages, nil)
        return code == SQLITE_OK && walPages >= 0
    }

    func close() {
        for statement in statements.values { sqlite_nio_sqlite3_finalize(statement) }
        statements.removeAll()
        if db != nil {
            _ = sqlite_nio_sqlite3_wal_hook(db, nil, nil)
            sqlite_nio_sqlite3_close_v2(db)
            db = nil
        }
        walObserver = nil
    }

    private func prepared(_ sql: String) throws(SQLiteFailure) -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        guard db != nil else { throw SQLiteFailure(code: SQLITE_MISUSE, message: "the database is closed") }
        if statements.count >= Self.cacheLimit {
            for statement in statements.values { sqlite_nio_sqlite3_finalize(statement) }
            statements.removeAll(keepingCapacity: true)
        }
        var statement: OpaquePointer?
        try check(sqlite_nio_sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil))
        guard let statement else { throw SQLiteFailure(code: SQLITE_MISUSE, message: "no statement in \(sql)") }
        statements[sql] = statement
        return statement
    }

    private static func value(_ statement: OpaquePointer, _ column: Int32) -> SQLiteData {
        switch sqlite_nio_sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER:
            return .integer(Int(sqlite_nio_sqlite3_column_int64(statement, column)))
        case SQLITE_FLOAT:
            return .float(sqlite_nio_sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            guard let text = sqlite_nio_sqlite3_column_text(statement, column) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            guard let bytes = sqlite_nio_sqlite3_column_blob(statement, column) else { return .blob(ByteBuffer()) }
            return .blob(ByteBuffer(bytes: UnsafeRawBufferPointer(start: bytes, count: count)))
        default:
            return .null
        }
    }

    private func check(_ code: Int32) throws(SQLiteFailure) {
        guard code == SQLITE_OK else { throw failure(code) }
    }

    private func failure(_ code: Int32) -> SQLiteFailure {
        SQLiteFailure(code: code, message: Self.message(db, code))
    }

    private static func message(_ db: OpaquePointer?, _ code: Int32) -> String {
        if let db, let text = sqlite_nio_sqlite3_errmsg(db) { return String(cString: text) }
        return String(cString: sqlite_nio_sqlite3_errstr(code))
    }
}

/// An error SQLite returned: its extended result code and message.
struct SQLiteFailure: Error, CustomStringConvertible {
    let code: Int32
    let message: String
    var description: String { "SQLite error \(code): \(message)" }
}

extension SQLiteData {
    fileprivate func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        switch self {
        case .integer(let value): sqlite_nio_sqlite3_bind_int64(statement, index, Int64(value))
        case .float(let value): sqlite_nio_sqlite3_bind_double(statement, index, value)
        case .text(let value):
            sqlite_nio_sqlite3_bind_text64(
                statement, index, value, UInt64(value.utf8.count), transient, UInt8(SQLITE_UTF8))
        case .blob(let value):
            value.withUnsafeReadableBytes {
                sqlite_nio_sqlite3_bind_blob64(statement, index, $0.baseAddress, UInt64($0.count), transient)
            }
        case .null: sqlite_nio_sqlite3_bind_null(statement, index)
        }
    }
}

/// SQLite copies a value bound with this destructor, so the Swift string may go away after the call.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// Runs a task's jobs on one event loop's thread: the embedded database's thread, where every statement of
/// a unit of work then runs without a hop of its own (and, in tests, a chosen loop of `serve`'s).
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    var isCurrent: Bool { loop.inEventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
