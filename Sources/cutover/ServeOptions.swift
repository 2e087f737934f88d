import ArgumentParser
import CutoverCore
import Foundation

/// Every setting of SPEC §7: a flag, else its environment variable, else the default.
struct ServeOptions: ParsableArguments {
    @Option(help: "sqlite://PATH, sqlite::memory: or postgres://user:pw@host:port/db [CUTOVER_DATABASE_URL]")
    var databaseURL: String?
    @Option(help: "Address to listen on, host:port [CUTOVER_LISTEN] (default 127.0.0.1:8080)")
    var listen: String?
    @Option(help: "Admin bearer token; repeatable [CUTOVER_ADMIN_TOKENS, comma-separated]")
    var adminToken: [String] = []
    @Option(help: "Registration bearer token; repeatable [CUTOVER_REGISTRATION_TOKENS]")
    var registrationToken: [String] = []
    @Flag(help: "Serve on a non-loopback address without tokens [CUTOVER_INSECURE]")
    var insecure = false
    @Option(help: "first | never [CUTOVER_AUTO_PROMOTE]")
    var autoPromote: String?
    @Option(help: "http | none [CUTOVER_PROBE]")
    var probe: String?
    @Option(help: "Readiness path probed on each pod [CUTOVER_PROBE_PATH] (default /healthz)")
    var probePath: String?
    @Option(help: "Pending longer than this fails [CUTOVER_PROGRESS_DEADLINE] (default 10m)")
    var progressDeadline: String?
    @Option(help: "[CUTOVER_RESYNC_INTERVAL] (default 30s)")
    var resyncInterval: String?
    @Option(help: "How long a deleted deployment stays restorable [CUTOVER_DELETION_GRACE] (default 24h)")
    var deletionGrace: String?
    @Option(help: "[CUTOVER_GC_INTERVAL] (default 60s)")
    var gcInterval: String?
    @Option(help: "[CUTOVER_RETAIN_PREVIOUS_PRODUCTION] (default 5)")
    var retainPreviousProduction: String?
    @Option(help: "[CUTOVER_RETAIN_INACTIVE] (default 20)")
    var retainInactive: String?
    @Option(help: "[CUTOVER_FAILED_TTL] (default 24h)")
    var failedTtl: String?
    @Option(help: "Allowed acp_url hosts: names, *.suffix, CIDRs; comma-separated [CUTOVER_ACP_ALLOWED_HOSTS] (default any)")
    var acpAllowedHosts: String?
    @Option(help: "[CUTOVER_RPC_TIMEOUT] (default 60s)")
    var rpcTimeout: String?
    @Option(help: "Reconcile workers [CUTOVER_WORKERS] (default 4)")
    var workers: String?
    @Option(help: "Time to drain on SIGTERM [CUTOVER_SHUTDOWN_GRACE] (default 30s)")
    var shutdownGrace: String?
    @Option(help: "json | text [CUTOVER_LOG_FORMAT] (default text on a terminal, else json)")
    var logFormat: String?
    @Option(help: "trace | debug | info | notice | warning | error | critical [CUTOVER_LOG_LEVEL] (default info)")
    var logLevel: String?
}

/// The resolved configuration.
struct ServeSettings {
    var databaseURL: String
    var host: String
    var port: Int
    var adminTokens: [String]
    var registrationTokens: [String]
    var insecure: Bool
    var reconcile: ReconcilePolicy
    var resyncInterval: Duration
    var deletionGrace: Duration
    var gcInterval: Duration
    var retainPreviousProduction: Int
    var retainInactive: Int
    var failedTTL: Duration
    var allowedHosts: HostAllowlist
    var rpcTimeout: Duration
    var workers: Int
    var shutdownGrace: Duration
    var logJSON: Bool
    var logLevel: String

    init(_ o: ServeOptions, environment env: [String: String] = ProcessInfo.processInfo.environment) throws {
        func value(_ flag: String?, _ name: String) -> String? {
            flag ?? env[name].flatMap { $0.isEmpty ? nil : $0 }
        }
        func list(_ flags: [String], _ name: String) -> [String] {
            let raw = flags.isEmpty ? (env[name]?.split(separator: ",").map(String.init) ?? []) : flags
            return raw.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        func duration(_ flag: String?, _ name: String, _ option: String, _ fallback: Duration) throws -> Duration {
            guard let text = value(flag, name) else { return fallback }
            guard let d = Duration.parse(text), d > .zero else {
                throw ValidationError("--\(option) '\(text)' is not a duration like 250ms, 30s, 10m or 24h")
            }
            return d
        }
        func integer(_ flag: String?, _ name: String, _ option: String, _ fallback: Int, min: Int) throws -> Int {
            guard let text = value(flag, name) else { return fallback }
            guard let n = Int(text), n >= min else { throw ValidationError("--\(option) '\(text)' must be an integer ≥ \(min)") }
            return n
        }
        func choice<E: RawRepresentable & CaseIterable>(_ flag: String?, _ name: String, _ option: String, _ fallback: E)
            throws -> E where E.RawValue == String
        {
            guard let text = value(flag, name) else { return fallback }
            guard let e = E(rawValue: text) else {
                throw ValidationError("--\(option) must be one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return e
        }

        databaseURL = value(o.databaseURL, "CUTOVER_DATABASE_URL") ?? "sqlite://cutover.sqlite"
        let listen = value(o.listen, "CUTOVER_LISTEN") ?? "127.0.0.1:8080"
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
            (0...65535).contains(port)
        else { throw ValidationError("--listen '\(listen)' must be host:port") }
        host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        self.port = port
        adminTokens = list(o.adminToken, "CUTOVER_ADMIN_TOKENS")
        registrationTokens = list(o.registrationToken, "CUTOVER_REGISTRATION_TOKENS")
        insecure = o.insecure || ["1", "true", "yes"].contains(env["CUTOVER_INSECURE"]?.lowercased() ?? "")
        reconcile = ReconcilePolicy(
            autoPromote: try choice(o.autoPromote, "CUTOVER_AUTO_PROMOTE", "auto-promote", AutoPromotePolicy.first),
            probe: try choice(o.probe, "CUTOVER_PROBE", "probe", ProbeMode.http),
            probePath: value(o.probePath, "CUTOVER_PROBE_PATH") ?? "/healthz",
            progressDeadline: try duration(o.progressDeadline, "CUTOVER_PROGRESS_DEADLINE", "progress-deadline", .seconds(600)))
        resyncInterval = try duration(o.resyncInterval, "CUTOVER_RESYNC_INTERVAL", "resync-interval", .seconds(30))
        deletionGrace = try duration(o.deletionGrace, "CUTOVER_DELETION_GRACE", "deletion-grace", .seconds(86400))
        gcInterval = try duration(o.gcInterval, "CUTOVER_GC_INTERVAL", "gc-interval", .seconds(60))
        retainPreviousProduction = try integer(
            o.retainPreviousProduction, "CUTOVER_RETAIN_PREVIOUS_PRODUCTION", "retain-previous-production", 5, min: 0)
        retainInactive = try integer(o.retainInactive, "CUTOVER_RETAIN_INACTIVE", "retain-inactive", 20, min: 0)
        failedTTL = try duration(o.failedTtl, "CUTOVER_FAILED_TTL", "failed-ttl", .seconds(86400))
        do {
            allowedHosts = try HostAllowlist(parsing: list(
                o.acpAllowedHosts.map { $0.split(separator: ",").map(String.init) } ?? [], "CUTOVER_ACP_ALLOWED_HOSTS"))
        } catch {
            throw ValidationError("--acp-allowed-hosts: \(error.message)")
        }
        rpcTimeout = try duration(o.rpcTimeout, "CUTOVER_RPC_TIMEOUT", "rpc-timeout", .seconds(60))
        workers = try integer(o.workers, "CUTOVER_WORKERS", "workers", 4, min: 1)
        shutdownGrace = try duration(o.shutdownGrace, "CUTOVER_SHUTDOWN_GRACE", "shutdown-grace", .seconds(30))
        let format = value(o.logFormat, "CUTOVER_LOG_FORMAT") ?? (isatty(STDERR_FILENO) == 1 ? "text" : "json")
        guard ["json", "text"].contains(format) else { throw ValidationError("--log-format must be json or text") }
        logJSON = format == "json"
        logLevel = value(o.logLevel, "CUTOVER_LOG_LEVEL") ?? "info"
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical")
        }
    }

    var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// SPEC §6: open (tokenless) only on loopback, unless explicitly `--insecure`.
    func checkExposure() throws {
        guard adminTokens.isEmpty, registrationTokens.isEmpty, !isLoopback, !insecure else { return }
        throw ValidationError(
            "refusing to listen on \(host):\(port) without tokens: anyone who can reach it could promote, delete and register. "
                + "Set --admin-token (CUTOVER_ADMIN_TOKENS) and --registration-token (CUTOVER_REGISTRATION_TOKENS), "
                + "listen on 127.0.0.1, or pass --insecure (CUTOVER_INSECURE=true) to run open anyway.")
    }
}
