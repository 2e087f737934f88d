import Logging
import PostgresNIO
import Synchronization

/// Statements run on PostgreSQL as named prepared statements, so the server parses and plans each text
/// once per connection instead of once per call. Parsing and planning were about half of PostgreSQL's
/// CPU per request (more for the task calls' CTE statements): a create's transaction ran 1.8× faster
/// under pgbench with prepared statements than with the unnamed ones postgres-nio sends for a plain query.
///
/// postgres-nio prepares a statement on a connection the first time it runs under a name, and keeps the
/// preparation for the connection's life. Its `PostgresPreparedStatement` takes the name, text and
/// parameter types from the type; Cutover's texts are known only at run time (SQLKit renders filters and
/// batches), so `PreparedQuery` reads them from a task-local `Shape` set around the one call.
final class PreparedStatements: Sendable {
    /// The names of this process's statements, shared by every connection.
    static let shared = PreparedStatements(capacity: 512)

    struct Shape: Hashable, Sendable {
        var sql: String
        /// Each parameter's type as the plain query would send it: text, int8, or unspecified for NULL
        /// (the server infers it). A different pattern of NULLs is a different shape, so the server infers
        /// exactly what it did for the unnamed statement.
        var types: [PostgresDataType]
    }

    /// Distinct shapes that get a name; any further ones run unnamed, as before. Shapes are few (the hot
    /// statements, and a handful of filters and batch sizes), but nothing bounds the batch sizes of a
    /// garbage collection, so this bounds what each connection keeps prepared on the server.
    let capacity: Int
    private let state = Mutex(State())

    private struct State {
        var names: [Shape: String] = [:]
        var issued = 0

        mutating func issue(_ shape: Shape) -> String {
            issued += 1
            let name = "cutover_\(issued)"
            names[shape] = name
            return name
        }
    }

    init(capacity: Int) { self.capacity = capacity }

    /// The name `shape` is prepared under, or nil when every name is given.
    func name(for shape: Shape) -> String? {
        state.withLock { state in
            if let name = state.names[shape] { return name }
            guard state.names.count < capacity else { return nil }
            return state.issue(shape)
        }
    }

    /// Gives `shape` a new name in place of `name`, whose preparation failed on some connection.
    func rename(_ shape: Shape, from name: String) {
        state.withLock { state in
            if state.names[shape] == name { _ = state.issue(shape) }
        }
    }

    /// Runs `sql` on `connection` as the prepared statement of its shape.
    func rows(
        _ connection: PostgresConnection, sql: String, bindings: PostgresBindings, types: [PostgresDataType],
        logger: Logger
    ) async throws -> [PostgresRow] {
        let shape = Shape(sql: sql, types: types)
        guard let name = name(for: shape) else {
            return try await connection.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger).collect()
        }
        do {
            return try await PreparedQuery.$current.withValue(.init(name: name, shape: shape)) {
                var rows: [PostgresRow] = []
                for try await row in try await connection.execute(PreparedQuery(bindings: bindings), logger: logger) {
                    rows.append(row)
                }
                return rows
            }
        } catch let error as PSQLError where mayFailPreparationForNow(error) {
            // postgres-nio remembers a failed preparation for the connection's life, and these errors can
            // fail one that would succeed later: the shape moves to a new name, prepared afresh.
            rename(shape, from: name)
            throw error
        }
    }

    /// Errors a statement's preparation can meet for a reason that passes: an aborted transaction, a lock
    /// or statement timeout, a cancellation.
    private func mayFailPreparationForNow(_ error: PSQLError) -> Bool {
        guard error.code == .server, let state = error.serverInfo?[.sqlState] else { return false }
        return state.hasPrefix("25") || state.hasPrefix("57") || state == "55P03"
    }
}

/// The statement postgres-nio runs; see `PreparedStatements`.
private struct PreparedQuery: PostgresPreparedStatement {
    struct Current: Sendable {
        var name: String
        var shape: PreparedStatements.Shape
    }

    /// Set around each call; postgres-nio reads the name, text and types from the type during the call.
    @TaskLocal static var current = Current(name: "", shape: .init(sql: "", types: []))

    static var name: String { current.name }
    static var sql: String { current.shape.sql }
    static var bindingDataTypes: [PostgresDataType] { current.shape.types }

    let bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}
