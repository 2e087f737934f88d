import CutoverCore
import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// Where the records live, parsed from `--database-url`.
public enum DatabaseURL: Sendable, Equatable {
    case sqliteFile(String)
    case sqliteMemory
    case postgres(host: String, port: Int, user: String, password: String?, database: String, tls: TLSMode)

    public enum TLSMode: String, Sendable { case disable, prefer, require }

    public init(parsing text: String) throws(CutoverError) {
        if text == "sqlite::memory:" || text == "sqlite://:memory:" {
            self = .sqliteMemory
            return
        }
        if text.hasPrefix("sqlite://") {
            let path = String(text.dropFirst("sqlite://".count))
            guard !path.isEmpty else { throw .invalid("database-url", "sqlite:// needs a file path") }
            self = .sqliteFile(path)
            return
        }
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://"),
            let url = URLComponents(string: text), let host = url.host, !host.isEmpty
        else {
            throw .invalid(
                "database-url", "expected sqlite://PATH, sqlite::memory: or postgres://user:pw@host:port/db")
        }
        let database = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        let sslmode = url.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        guard let tls = TLSMode(rawValue: sslmode == "verify-full" ? "require" : sslmode) else {
            throw .invalid("database-url", "sslmode must be disable, prefer or require")
        }
        self = .postgres(
            host: host, port: url.port ?? 5432, user: url.user ?? "postgres",
            password: url.password?.removingPercentEncoding, database: database.isEmpty ? "postgres" : database,
            tls: tls)
    }

    /// The URL with any password masked, for logs.
    public var redacted: String {
        switch self {
        case .sqliteFile(let path): "sqlite://\(path)"
        case .sqliteMemory: "sqlite::memory:"
        case .postgres(let host, let port, let user, _, let db, _): "postgres://\(user):***@\(host):\(port)/\(db)"
        }
    }
}

public enum StoreFactory {
    /// Opens the store `url` names. The caller runs `migrate()` before serving.
    public static func open(_ url: DatabaseURL, maxConnections: Int = 32, logger: Logger) async throws -> any Store {
        switch url {
        case .sqliteMemory:
            return SQLStore(backend: try SQLiteBackend(storage: .memory), logger: logger)
        case .sqliteFile(let path):
            return SQLStore(backend: try SQLiteBackend(storage: .file(path: path)), logger: logger)
        case .postgres(let host, let port, let user, let password, let database, let tls):
            let tlsConfig: PostgresConnection.Configuration.TLS =
                switch tls {
                case .disable: .disable
                case .prefer: .prefer(try .init(configuration: .makeClientConfiguration()))
                case .require: .require(try .init(configuration: .makeClientConfiguration()))
                }
            var configuration = PostgresConnection.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: tlsConfig)
            // A database that does not answer at all (not even a refusal) fails a request within this.
            configuration.options.connectTimeout = .seconds(2)
            let backend = PostgresBackend(configuration: configuration, maxConnections: maxConnections, logger: logger)
            return SQLStore(backend: backend, logger: logger)
        }
    }
}
