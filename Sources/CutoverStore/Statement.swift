import CutoverCore
import Logging
import NIOPosix
import PostgresKit
import PostgresNIO
import SQLKit
import SQLiteKit
import SQLiteNIO

/// A statement of the hot paths, written once with PostgreSQL's `$1` parameters; SQLite gets the same
/// text with `?1`, which numbers its parameters the same way. Statements are static, so no SQL is built
/// per request.
struct Statement: Sendable {
    let postgres: String
    let sqlite: String

    init(_ sql: String) {
        postgres = sql
        sqlite = Self.sqliteParameters(sql)
    }

    /// `$N` → `?N` outside quoted literals.
    static func sqliteParameters(_ sql: String) -> String {
        var out = ""
        out.reserveCapacity(sql.utf8.count)
        var inLiteral = false
        for c in sql {
            if c == "'" { inLiteral.toggle() }
            out.append(c == "$" && !inLiteral ? "?" : c)
        }
        return out
    }
}

/// A statement parameter: every column Cutover stores is text or a 64-bit integer. On PostgreSQL a
/// column of many rows can also be one array parameter (`texts`, `ints`), read back with `unnest`: an
/// insert of many rows then has one statement text, prepared once, whatever its number of rows. Not
/// for updates or lookups by id: PostgreSQL's generic plan guesses ten rows per array, so an `UPDATE …
/// FROM unnest(…)` or an `id = ANY($1)` read was planned again on every call (measured: PostgreSQL's
/// CPU per registration went from 0.8 to 1.6 ms), where an `IN` list of parameters keeps its plan.
enum Bind: Sendable {
    case text(String?)
    case int(Int64?)
    case texts(TextColumn)
    case ints(IntColumn)

    static func bool(_ value: Bool) -> Bind { .int(value ? 1 : 0) }
    static func time(_ value: Timestamp?) -> Bind { .int(value?.microseconds) }

    /// A parameter SQLKit's interpolation collected: only the types Cutover binds are accepted.
    init(_ value: any Encodable & Sendable) throws {
        switch value {
        case let text as String: self = .text(text)
        case let number as Int64: self = .int(number)
        case let number as Int: self = .int(Int64(number))
        case let text as String?: self = .text(text)
        case let number as Int64?: self = .int(number)
        case let number as Int?: self = .int(number.map(Int64.init))
        case let column as TextColumn: self = .texts(column)
        case let column as IntColumn: self = .ints(column)
        default: throw UnsupportedBind(type: "\(type(of: value))")
        }
    }

    struct UnsupportedBind: Error, CustomStringConvertible {
        let type: String
        var description: String { "cannot bind a \(type) as a statement parameter" }
    }
}

/// A column of rows as one PostgreSQL array parameter, NULLs included (postgres-nio encodes arrays of
/// non-optional elements only). Encodable so that SQLKit's interpolation can carry it to `Bind`.
struct Column<Element: ColumnElement>: PostgresNonThrowingEncodable, Encodable, Sendable {
    let values: [Element?]

    init(_ values: [Element?]) { self.values = values }

    static var psqlType: PostgresDataType { Element.psqlArrayType }
    static var psqlFormat: PostgresFormat { .binary }

    /// PostgreSQL's binary array format, one dimension: the number of dimensions, a has-NULLs flag, the
    /// element type, the dimension's length and lower bound, then each element as its length (-1 for
    /// NULL) and bytes.
    func encode<JSONEncoder: PostgresJSONEncoder>(
        into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>
    ) {
        buffer.writeInteger(values.isEmpty ? 0 : 1, as: Int32.self)
        buffer.writeInteger(values.contains { $0 == nil } ? 1 : 0, as: Int32.self)
        buffer.writeInteger(Element.psqlType.rawValue)
        guard !values.isEmpty else { return }
        buffer.writeInteger(Int32(values.count))
        buffer.writeInteger(1, as: Int32.self)
        for value in values {
            if let value { value.writeElement(into: &buffer) } else { buffer.writeInteger(-1, as: Int32.self) }
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(values)
    }
}

typealias TextColumn = Column<String>
typealias IntColumn = Column<Int64>

protocol ColumnElement: Encodable, Sendable {
    static var psqlType: PostgresDataType { get }
    static var psqlArrayType: PostgresDataType { get }
    /// The element's length, then its bytes in the binary format.
    func writeElement(into buffer: inout ByteBuffer)
}

extension String: ColumnElement {
    func writeElement(into buffer: inout ByteBuffer) {
        buffer.writeInteger(Int32(utf8.count))
        buffer.writeString(self)
    }
}

extension Int64: ColumnElement {
    func writeElement(into buffer: inout ByteBuffer) {
        buffer.writeInteger(8, as: Int32.self)
        buffer.writeInteger(self)
    }
}

/// The driver connection beneath a unit of work: statements here skip SQLKit, binding and decoding with
/// the drivers' own typed values (SQLKit's Codable row decoding was the largest CPU cost of a request).
enum DriverConnection: Sendable {
    case postgres(PostgresConnection, Logger)
    case sqlite(SQLiteHandle)

    /// Runs `statement` and returns its rows, each read by position.
    func rows(_ statement: Statement, _ binds: [Bind] = []) async throws -> [Row] {
        switch self {
        case .postgres: try await rows(sql: statement.postgres, binds)
        case .sqlite: try await rows(sql: statement.sqlite, binds)
        }
    }

    /// Runs `sql`, already in this backend's parameter style.
    func rows(sql: String, _ binds: [Bind]) async throws -> [Row] {
        switch self {
        case .postgres(let connection, let logger):
            var bindings = PostgresBindings(capacity: binds.count)
            var types: [PostgresDataType] = []
            types.reserveCapacity(binds.count)
            for bind in binds {
                switch bind {
                case .text(let value?): bindings.append(value); types.append(.text)
                case .int(let value?): bindings.append(value); types.append(.int8)
                case .text(nil), .int(nil): bindings.appendNull(); types.append(.null)
                case .texts(let column): bindings.append(column); types.append(.textArray)
                case .ints(let column): bindings.append(column); types.append(.int8Array)
                }
            }
            return try await PreparedStatements.shared.rows(
                connection, sql: sql, bindings: bindings, types: types, logger: logger
            ).map { .postgres($0) }
        case .sqlite(let handle):
            let data: [SQLiteData] = try binds.map {
                switch $0 {
                case .text(let value?): .text(value)
                case .int(let value?): .integer(Int(value))
                case .text(nil), .int(nil): .null
                case .texts, .ints: throw Bind.UnsupportedBind(type: "array (a PostgreSQL parameter)")
                }
            }
            return try handle.rows(sql, data).map { .sqlite($0) }
        }
    }

    func run(_ statement: Statement, _ binds: [Bind] = []) async throws {
        _ = try await rows(statement, binds)
    }

    /// Runs `sql`, with no parameters and no rows wanted: schema changes and settings.
    func execute(sql: String) async throws {
        switch self {
        case .postgres(let connection, let logger):
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).collect()
        case .sqlite(let handle):
            try handle.execute(sql)
        }
    }

    /// An SQLKit database that renders this backend's SQL, for the statements built at run time; it
    /// runs nothing (`rows(sql:_:)` does).
    var syntax: any SQLDatabase {
        switch self {
        case .postgres: SQLSyntax.postgres
        case .sqlite: SQLSyntax.sqlite
        }
    }
}

/// One result row, read left to right in the order of the statement's columns.
enum Row: Sendable {
    case postgres(PostgresRow)
    case sqlite([SQLiteData])

    var reader: RowReader { RowReader(self) }

    /// The first column, for one-column statements.
    func text() throws -> String {
        var reader = reader
        return try reader.text()
    }

    func int() throws -> Int64 {
        var reader = reader
        return try reader.int()
    }

    func optionalInt() throws -> Int64? {
        var reader = reader
        return try reader.optionalInt()
    }
}

struct RowReader {
    // Two stored properties rather than an enum with payloads: advancing the iterator then mutates it in
    // place, where re-wrapping an enum payload copied it (a retain and a release per cell, which a
    // profile of lists of 50 showed).
    private var postgres: PostgresRow.Iterator?
    private let sqlite: [SQLiteData]
    private var index = 0

    init(_ row: Row) {
        switch row {
        case .postgres(let row):
            postgres = row.makeIterator()
            sqlite = []
        case .sqlite(let data):
            postgres = nil
            sqlite = data
        }
    }

    struct ColumnMissing: Error {}
    struct WrongType: Error, CustomStringConvertible {
        let value: String
        var description: String { "stored value \(value) has an unexpected type" }
    }

    mutating func text() throws -> String {
        guard let value = try optionalText() else { throw WrongType(value: "NULL") }
        return value
    }

    private enum Cell {
        case postgres(PostgresCell)
        case sqlite(SQLiteData)
    }

    private mutating func next() throws -> Cell {
        if postgres != nil {
            guard let cell = postgres!.next() else { throw ColumnMissing() }
            return .postgres(cell)
        }
        guard index < sqlite.count else { throw ColumnMissing() }
        defer { index += 1 }
        return .sqlite(sqlite[index])
    }

    mutating func optionalText() throws -> String? {
        switch try next() {
        case .postgres(let cell): return try cell.decode(String?.self)
        case .sqlite(.text(let value)): return value
        case .sqlite(.null): return nil
        case .sqlite(let other): throw WrongType(value: "\(other)")
        }
    }

    mutating func int() throws -> Int64 {
        guard let value = try optionalInt() else { throw WrongType(value: "NULL") }
        return value
    }

    mutating func optionalInt() throws -> Int64? {
        switch try next() {
        case .postgres(let cell): return try cell.decode(Int64?.self)
        case .sqlite(.integer(let value)): return Int64(value)
        case .sqlite(.null): return nil
        case .sqlite(let other): throw WrongType(value: "\(other)")
        }
    }

    mutating func time() throws -> Timestamp { Timestamp(microseconds: try int()) }
    mutating func optionalTime() throws -> Timestamp? { try optionalInt().map(Timestamp.init(microseconds:)) }
    mutating func bool() throws -> Bool { try int() != 0 }
}

/// A backend's SQL syntax for SQLKit's builders and interpolations: it renders statements, which
/// `StoreTransaction` then runs on the driver connection, and refuses to run anything itself.
struct SQLSyntax: SQLDatabase {
    let dialect: any SQLDialect
    let logger = Logger(label: "cutover.sql")
    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.any() }

    static let postgres = SQLSyntax(dialect: PostgresDialect())
    static let sqlite = SQLSyntax(dialect: SQLiteDialect())

    struct RendersOnly: Error, CustomStringConvertible {
        var description: String { "SQLSyntax renders statements; the driver connection runs them" }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        eventLoop.makeFailedFuture(RendersOnly())
    }
}
