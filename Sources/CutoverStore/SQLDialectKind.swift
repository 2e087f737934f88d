/// The two SQL dialects; the only places they differ are the migrations and row locks.
public enum SQLDialectKind: String, Sendable {
    case postgres, sqlite

    /// Appended to a SELECT that must lock the rows it reads until commit. SQLite needs none: its
    /// transactions are serialized in-process by `SQLiteBackend`.
    var forUpdate: String { self == .postgres ? " FOR UPDATE" : "" }
}
