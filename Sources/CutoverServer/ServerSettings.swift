import CutoverCore
import CutoverStore
import Foundation

/// A setting that cannot be used, in a sentence naming the flag or variable to fix.
public struct SettingsError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The raw text of each setting as given on the command line (nil or empty when not given).
public struct SettingInputs: Sendable {
    public var databaseURL: String?
    public var listen: String?
    public var adminToken: [String] = []
    public var registrationToken: [String] = []
    public var insecure = false
    public var autoPromote: String?
    public var probe: String?
    public var probePath: String?
    public var progressDeadline: String?
    public var resyncInterval: String?
    public var deletionGrace: String?
    public var gcInterval: String?
    public var retainPreviousProduction: String?
    public var retainInactive: String?
    public var failedTtl: String?
    public var acpAllowedHosts: String?
    public var rpcTimeout: String?
    public var taskAffinity: String?
    public var taskDrain: String?
    public var workers: String?
    public var shutdownGrace: String?
    public var logFormat: String?
    public var logLevel: String?

    public init() {}
}

/// The resolved configuration of `cutover serve`: each setting from its flag, else its environment
/// variable, else its default; a bad value is reported naming the flag or variable it came from.
public struct ServerSettings: Sendable {
    public var database: DatabaseURL
    public var host: String
    public var port: Int
    public var adminTokens: [String]
    public var registrationTokens: [String]
    public var insecure: Bool
    public var reconcile: ReconcilePolicy
    public var resyncInterval: Duration
    public var deletionGrace: Duration
    public var gcInterval: Duration
    public var retention: RetentionPolicy
    public var allowedHosts: HostAllowlist
    public var rpcTimeout: Duration
    /// Calls naming an existing task follow the deployment that owns it while it is Ready.
    public var taskAffinity: Bool
    public var workers: Int
    public var shutdownGrace: Duration
    public var logJSON: Bool
    public var logLevel: String

    public init(
        _ o: SettingInputs, environment env: [String: String] = ProcessInfo.processInfo.environment,
        stderrIsTerminal: Bool = isatty(STDERR_FILENO) == 1
    ) throws(SettingsError) {
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
        func duration(_ flag: String?, _ variable: String, _ option: String, _ fallback: Duration) throws(SettingsError) -> Duration {
            guard let (text, name) = value(flag, variable, option) else { return fallback }
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if let d = Duration.parse(trimmed) {
                guard d > .zero else { throw SettingsError("\(name) '\(text)' must be positive") }
                return d
            }
            if trimmed.hasPrefix("-"), Duration.parse(String(trimmed.dropFirst())) != nil {
                throw SettingsError("\(name) '\(text)' must be positive")
            }
            throw SettingsError("\(name) '\(text)' is not a duration like 250ms, 30s, 10m or 24h")
        }
        func integer(_ flag: String?, _ variable: String, _ option: String, _ fallback: Int, min: Int) throws(SettingsError) -> Int {
            guard let (text, name) = value(flag, variable, option) else { return fallback }
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= min else {
                throw SettingsError("\(name) '\(text)' must be an integer ≥ \(min)")
            }
            return n
        }
        func choice<E: RawRepresentable & CaseIterable>(_ flag: String?, _ variable: String, _ option: String, _ fallback: E)
            throws(SettingsError) -> E where E.RawValue == String
        {
            guard let (text, name) = value(flag, variable, option) else { return fallback }
            guard let e = E(rawValue: text) else {
                throw SettingsError("\(name) '\(text)' must be one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return e
        }

        let databaseURL = value(o.databaseURL, "CUTOVER_DATABASE_URL", "database-url") ?? ("sqlite://cutover.sqlite", "")
        database = try parseDatabaseURL(databaseURL.text, name: databaseURL.name)
        let (listen, listenName) = value(o.listen, "CUTOVER_LISTEN", "listen") ?? ("127.0.0.1:8080", "")
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
            (0...65535).contains(port)
        else { throw SettingsError("\(listenName) '\(listen)' must be host:port") }
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
        gcInterval = try duration(o.gcInterval, "CUTOVER_GC_INTERVAL", "gc-interval", .seconds(60))
        retention = RetentionPolicy(
            retainPreviousProduction: try integer(
                o.retainPreviousProduction, "CUTOVER_RETAIN_PREVIOUS_PRODUCTION", "retain-previous-production", 5, min: 0),
            retainInactive: try integer(o.retainInactive, "CUTOVER_RETAIN_INACTIVE", "retain-inactive", 20, min: 0),
            failedTTL: try duration(o.failedTtl, "CUTOVER_FAILED_TTL", "failed-ttl", .seconds(86400)),
            deletionGrace: deletionGrace,
            taskDrain: try duration(o.taskDrain, "CUTOVER_TASK_DRAIN", "task-drain", .seconds(3600)))
        do {
            allowedHosts = try HostAllowlist(parsing: list(
                o.acpAllowedHosts.map { $0.split(separator: ",").map(String.init) } ?? [], "CUTOVER_ACP_ALLOWED_HOSTS"))
        } catch {
            throw SettingsError("\(o.acpAllowedHosts == nil ? "CUTOVER_ACP_ALLOWED_HOSTS" : "--acp-allowed-hosts"): \(error.problem)")
        }
        rpcTimeout = try duration(o.rpcTimeout, "CUTOVER_RPC_TIMEOUT", "rpc-timeout", .seconds(60))
        let affinity = value(o.taskAffinity, "CUTOVER_TASK_AFFINITY", "task-affinity")
        guard affinity == nil || ["on", "off"].contains(affinity!.text) else {
            throw SettingsError("\(affinity!.name) '\(affinity!.text)' must be on or off")
        }
        taskAffinity = affinity?.text != "off"
        workers = try integer(o.workers, "CUTOVER_WORKERS", "workers", 4, min: 1)
        shutdownGrace = try duration(o.shutdownGrace, "CUTOVER_SHUTDOWN_GRACE", "shutdown-grace", .seconds(30))
        let format = value(o.logFormat, "CUTOVER_LOG_FORMAT", "log-format")
        guard format == nil || ["json", "text"].contains(format!.text) else {
            throw SettingsError("\(format!.name) '\(format!.text)' must be json or text")
        }
        logJSON = (format?.text ?? (stderrIsTerminal ? "text" : "json")) == "json"
        let level = value(o.logLevel, "CUTOVER_LOG_LEVEL", "log-level")
        logLevel = level?.text ?? "info"
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw SettingsError(
                "\(level!.name) '\(logLevel)' must be trace, debug, info, notice, warning, error or critical")
        }
    }

    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// `host:port` as a person would type it back into `--listen`.
    public var address: String { Self.address(host: host, port: port) }

    public static func address(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Open (tokenless) only on loopback, unless explicitly `--insecure`.
    public func checkExposure() throws(SettingsError) {
        guard adminTokens.isEmpty, registrationTokens.isEmpty, !isLoopback, !insecure else { return }
        throw SettingsError(
            "refusing to listen on \(address) without tokens: anyone who can reach it could promote, delete and register. "
                + "Set --admin-token (CUTOVER_ADMIN_TOKENS) and --registration-token (CUTOVER_REGISTRATION_TOKENS), "
                + "listen on 127.0.0.1, or pass --insecure (CUTOVER_INSECURE=true) to run open anyway.")
    }

    /// Admin tokens alone leave registration open, which is easy to miss: the admin API looks locked down.
    public var openRegistrationWarning: String? {
        guard !adminTokens.isEmpty, registrationTokens.isEmpty, !isLoopback else { return nil }
        return "registration is open on \(address): anyone who can reach it can register pods, and a legacy "
            + "registration (one without registration_metadata.deployment_id) takes over an existing agent's route. "
            + "Set --registration-token (CUTOVER_REGISTRATION_TOKENS) to require a token for /agents/register."
    }
}

/// `name` is the flag or variable the text came from, so the message points at what to fix.
public func parseDatabaseURL(_ text: String, name: String) throws(SettingsError) -> DatabaseURL {
    do {
        return try DatabaseURL(parsing: text)
    } catch {
        throw SettingsError("\(name): \(error.problem)")
    }
}

extension CutoverError {
    /// The problem alone: the API's "invalid request: field: …" framing reads wrong on a command line.
    public var problem: String {
        if case .validation(let problems) = self { return problems.map(\.problem).joined(separator: "; ") }
        return message
    }
}
