import ArgumentParser
import CutoverCore
import CutoverStore
import Foundation

/// Every setting of `serve`: a flag, else its environment variable, else the default. The flags are
/// optional strings (not typed values with defaults) so that an unset flag can fall back to the variable
/// and a bad value is reported by our validation, naming where it came from.
struct ServeOptions: ParsableArguments {
    @Option(help: .setting(
        "Where the records live: sqlite://PATH, sqlite::memory: or postgres://user:pw@host:port/db",
        default: "sqlite://cutover.sqlite", env: "CUTOVER_DATABASE_URL", value: "url"))
    var databaseURL: String?
    @Option(help: .setting("Address to listen on", default: "127.0.0.1:8080", env: "CUTOVER_LISTEN", value: "host:port"))
    var listen: String?
    @Option(help: .setting(
        "Admin bearer token; repeatable", default: "none", env: "CUTOVER_ADMIN_TOKENS, comma-separated", value: "token"))
    var adminToken: [String] = []
    @Option(help: .setting(
        "Bearer token that /agents/register requires; repeatable", default: "none",
        env: "CUTOVER_REGISTRATION_TOKENS, comma-separated", value: "token"))
    var registrationToken: [String] = []
    @Flag(help: .setting(
        "Serve on a non-loopback address without any token", default: "off", env: "CUTOVER_INSECURE=1|true|yes"))
    var insecure = false
    @Option(help: .setting(
        "Whether an agent's first Ready deployment becomes production: first | never", default: "first",
        env: "CUTOVER_AUTO_PROMOTE", value: "policy"))
    var autoPromote: String?
    @Option(help: .setting(
        "Readiness check of registered pods: http | none (none: Ready as soon as registered)", default: "http",
        env: "CUTOVER_PROBE", value: "mode"))
    var probe: String?
    @Option(help: .setting(
        "Path probed on each pod's acp_url, 2 s timeout", default: "/healthz", env: "CUTOVER_PROBE_PATH", value: "path"))
    var probePath: String?
    @Option(parsing: .unconditional, help: .setting(
        "A deployment Pending longer than this turns Failed", default: "10m", env: "CUTOVER_PROGRESS_DEADLINE",
        value: "duration"))
    var progressDeadline: String?
    @Option(parsing: .unconditional, help: .setting(
        "How often every Pending deployment is re-queued, a safety net for a missed change", default: "30s",
        env: "CUTOVER_RESYNC_INTERVAL", value: "duration"))
    var resyncInterval: String?
    @Option(parsing: .unconditional, help: .setting(
        "How long a soft-deleted deployment stays restorable", default: "24h", env: "CUTOVER_DELETION_GRACE",
        value: "duration"))
    var deletionGrace: String?
    @Option(help: .setting(
        "Hosts an acp_url may name: names, *.suffix, CIDRs; comma-separated", default: "any",
        env: "CUTOVER_ACP_ALLOWED_HOSTS", value: "hosts"))
    var acpAllowedHosts: String?
    @Option(parsing: .unconditional, help: .setting(
        "Longest wait for an agent's answer head (then 504) and longest silence inside its body (then the stream is cut)",
        default: "60s", env: "CUTOVER_RPC_TIMEOUT", value: "duration"))
    var rpcTimeout: String?
    @Option(parsing: .unconditional, help: .setting(
        "Reconcile workers, at least 1", default: "4", env: "CUTOVER_WORKERS", value: "n"))
    var workers: String?
    @Option(parsing: .unconditional, help: .setting(
        "Time to drain on SIGTERM or SIGINT", default: "30s", env: "CUTOVER_SHUTDOWN_GRACE", value: "duration"))
    var shutdownGrace: String?
    @Option(help: .setting(
        "json | text", default: "text on a terminal, else json", env: "CUTOVER_LOG_FORMAT", value: "format"))
    var logFormat: String?
    @Option(help: .setting(
        "trace | debug | info | notice | warning | error | critical", default: "info", env: "CUTOVER_LOG_LEVEL",
        value: "level"))
    var logLevel: String?
}

extension ArgumentHelp {
    /// One shape for every setting's help, so `--help` always shows the default and the variable.
    static func setting(_ abstract: String, default defaultValue: String, env: String, value valueName: String? = nil)
        -> ArgumentHelp
    {
        ArgumentHelp("\(abstract) (default: \(defaultValue); env: \(env))", valueName: valueName)
    }
}

/// The resolved configuration.
struct ServeSettings {
    var database: DatabaseURL
    var host: String
    var port: Int
    var adminTokens: [String]
    var registrationTokens: [String]
    var insecure: Bool
    var reconcile: ReconcilePolicy
    var resyncInterval: Duration
    var deletionGrace: Duration
    var allowedHosts: HostAllowlist
    var rpcTimeout: Duration
    var workers: Int
    var shutdownGrace: Duration
    var logJSON: Bool
    var logLevel: String

    init(_ o: ServeOptions, environment env: [String: String] = ProcessInfo.processInfo.environment) throws {
        /// A value and the name to blame when it is bad: the flag if it was given, else the variable.
        func value(_ flag: String?, _ variable: String, _ option: String) -> (text: String, name: String)? {
            if let flag { return (flag, "--\(option)") }
            guard let text = env[variable], !text.isEmpty else { return nil }
            return (text, variable)
        }
        func list(_ flags: [String], _ variable: String) -> [String] {
            let raw = flags.isEmpty ? (env[variable]?.split(separator: ",").map(String.init) ?? []) : flags
            return raw.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        func duration(_ flag: String?, _ variable: String, _ option: String, _ fallback: Duration) throws -> Duration {
            guard let (text, name) = value(flag, variable, option) else { return fallback }
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if let d = Duration.parse(trimmed) {
                guard d > .zero else { throw ValidationError("\(name) '\(text)' must be positive") }
                return d
            }
            if trimmed.hasPrefix("-"), Duration.parse(String(trimmed.dropFirst())) != nil {
                throw ValidationError("\(name) '\(text)' must be positive")
            }
            throw ValidationError("\(name) '\(text)' is not a duration like 250ms, 30s, 10m or 24h")
        }
        func integer(_ flag: String?, _ variable: String, _ option: String, _ fallback: Int, min: Int) throws -> Int {
            guard let (text, name) = value(flag, variable, option) else { return fallback }
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= min else {
                throw ValidationError("\(name) '\(text)' must be an integer ≥ \(min)")
            }
            return n
        }
        func choice<E: RawRepresentable & CaseIterable>(_ flag: String?, _ variable: String, _ option: String, _ fallback: E)
            throws -> E where E.RawValue == String
        {
            guard let (text, name) = value(flag, variable, option) else { return fallback }
            guard let e = E(rawValue: text) else {
                throw ValidationError("\(name) '\(text)' must be one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return e
        }

        let databaseURL = value(o.databaseURL, "CUTOVER_DATABASE_URL", "database-url") ?? ("sqlite://cutover.sqlite", "")
        database = try parseDatabaseURL(databaseURL.text, name: databaseURL.name)
        let (listen, listenName) = value(o.listen, "CUTOVER_LISTEN", "listen") ?? ("127.0.0.1:8080", "")
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
            (0...65535).contains(port)
        else { throw ValidationError("\(listenName) '\(listen)' must be host:port") }
        host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        self.port = port
        adminTokens = list(o.adminToken, "CUTOVER_ADMIN_TOKENS")
        registrationTokens = list(o.registrationToken, "CUTOVER_REGISTRATION_TOKENS")
        insecure = o.insecure || ["1", "true", "yes"].contains(env["CUTOVER_INSECURE"]?.lowercased() ?? "")
        reconcile = ReconcilePolicy(
            autoPromote: try choice(o.autoPromote, "CUTOVER_AUTO_PROMOTE", "auto-promote", AutoPromotePolicy.first),
            probe: try choice(o.probe, "CUTOVER_PROBE", "probe", ProbeMode.http),
            probePath: value(o.probePath, "CUTOVER_PROBE_PATH", "probe-path")?.text ?? "/healthz",
            progressDeadline: try duration(o.progressDeadline, "CUTOVER_PROGRESS_DEADLINE", "progress-deadline", .seconds(600)))
        resyncInterval = try duration(o.resyncInterval, "CUTOVER_RESYNC_INTERVAL", "resync-interval", .seconds(30))
        deletionGrace = try duration(o.deletionGrace, "CUTOVER_DELETION_GRACE", "deletion-grace", .seconds(86400))
        do {
            allowedHosts = try HostAllowlist(parsing: list(
                o.acpAllowedHosts.map { $0.split(separator: ",").map(String.init) } ?? [], "CUTOVER_ACP_ALLOWED_HOSTS"))
        } catch {
            throw ValidationError("\(o.acpAllowedHosts == nil ? "CUTOVER_ACP_ALLOWED_HOSTS" : "--acp-allowed-hosts"): \(error.problem)")
        }
        rpcTimeout = try duration(o.rpcTimeout, "CUTOVER_RPC_TIMEOUT", "rpc-timeout", .seconds(60))
        workers = try integer(o.workers, "CUTOVER_WORKERS", "workers", 4, min: 1)
        shutdownGrace = try duration(o.shutdownGrace, "CUTOVER_SHUTDOWN_GRACE", "shutdown-grace", .seconds(30))
        let format = value(o.logFormat, "CUTOVER_LOG_FORMAT", "log-format")
        guard format == nil || ["json", "text"].contains(format!.text) else {
            throw ValidationError("\(format!.name) '\(format!.text)' must be json or text")
        }
        logJSON = (format?.text ?? (isatty(STDERR_FILENO) == 1 ? "text" : "json")) == "json"
        let level = value(o.logLevel, "CUTOVER_LOG_LEVEL", "log-level")
        logLevel = level?.text ?? "info"
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw ValidationError(
                "\(level!.name) '\(logLevel)' must be trace, debug, info, notice, warning, error or critical")
        }
    }

    var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// `host:port` as a person would type it back into `--listen`.
    var address: String { Self.address(host: host, port: port) }

    static func address(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Open (tokenless) only on loopback, unless explicitly `--insecure`.
    func checkExposure() throws {
        guard adminTokens.isEmpty, registrationTokens.isEmpty, !isLoopback, !insecure else { return }
        throw ValidationError(
            "refusing to listen on \(address) without tokens: anyone who can reach it could promote, delete and register. "
                + "Set --admin-token (CUTOVER_ADMIN_TOKENS) and --registration-token (CUTOVER_REGISTRATION_TOKENS), "
                + "listen on 127.0.0.1, or pass --insecure (CUTOVER_INSECURE=true) to run open anyway.")
    }

    /// Admin tokens alone leave registration open, which is easy to miss: the admin API looks locked down.
    var openRegistrationWarning: String? {
        guard !adminTokens.isEmpty, registrationTokens.isEmpty, !isLoopback else { return nil }
        return "registration is open on \(address): anyone who can reach it can register pods, and a legacy "
            + "registration (one without registration_metadata.deployment_id) takes over an existing agent's route. "
            + "Set --registration-token (CUTOVER_REGISTRATION_TOKENS) to require a token for /agents/register."
    }
}

/// `name` is the flag or variable the text came from, so the message points at what to fix.
func parseDatabaseURL(_ text: String, name: String) throws -> DatabaseURL {
    do {
        return try DatabaseURL(parsing: text)
    } catch {
        throw ValidationError("\(name): \(error.problem)")
    }
}

extension CutoverError {
    /// The problem alone: the API's "invalid request: field: …" framing reads wrong on a command line.
    var problem: String {
        if case .validation(let problems) = self { return problems.map(\.problem).joined(separator: "; ") }
        return message
    }
}
