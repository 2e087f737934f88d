import ArgumentParser
import CutoverCore
import CutoverServer
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
    @Option(parsing: .unconditional, help: .setting(
        "How often garbage collection runs (and retention with it)", default: "60s", env: "CUTOVER_GC_INTERVAL",
        value: "duration"))
    var gcInterval: String?
    @Option(parsing: .unconditional, help: .setting(
        "Former production deployments each agent keeps (its rollback targets)", default: "5",
        env: "CUTOVER_RETAIN_PREVIOUS_PRODUCTION", value: "n"))
    var retainPreviousProduction: String?
    @Option(parsing: .unconditional, help: .setting(
        "Other deployments (never production) each agent keeps, newest first", default: "20",
        env: "CUTOVER_RETAIN_INACTIVE", value: "n"))
    var retainInactive: String?
    @Option(parsing: .unconditional, help: .setting(
        "A Failed deployment older than this expires", default: "24h", env: "CUTOVER_FAILED_TTL", value: "duration"))
    var failedTtl: String?
    @Option(help: .setting(
        "Hosts an acp_url may name: names, *.suffix, CIDRs; comma-separated", default: "any",
        env: "CUTOVER_ACP_ALLOWED_HOSTS", value: "hosts"))
    var acpAllowedHosts: String?
    @Option(parsing: .unconditional, help: .setting(
        "Longest wait for an agent's answer head (then 504) and longest silence inside its body (then the stream is cut)",
        default: "60s", env: "CUTOVER_RPC_TIMEOUT", value: "duration"))
    var rpcTimeout: String?
    @Option(help: .setting(
        "Whether calls naming an existing task follow the deployment that owns it while it is Ready: on | off",
        default: "on", env: "CUTOVER_TASK_AFFINITY", value: "mode"))
    var taskAffinity: String?
    @Option(parsing: .unconditional, help: .setting(
        "Retention keeps a deployment owning a RUNNING task active within this long", default: "1h",
        env: "CUTOVER_TASK_DRAIN", value: "duration"))
    var taskDrain: String?
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

extension ServeOptions {
    var inputs: SettingInputs {
        var i = SettingInputs()
        i.databaseURL = databaseURL
        i.listen = listen
        i.adminToken = adminToken
        i.registrationToken = registrationToken
        i.insecure = insecure
        i.autoPromote = autoPromote
        i.probe = probe
        i.probePath = probePath
        i.progressDeadline = progressDeadline
        i.resyncInterval = resyncInterval
        i.deletionGrace = deletionGrace
        i.gcInterval = gcInterval
        i.retainPreviousProduction = retainPreviousProduction
        i.retainInactive = retainInactive
        i.failedTtl = failedTtl
        i.acpAllowedHosts = acpAllowedHosts
        i.rpcTimeout = rpcTimeout
        i.taskAffinity = taskAffinity
        i.taskDrain = taskDrain
        i.workers = workers
        i.shutdownGrace = shutdownGrace
        i.logFormat = logFormat
        i.logLevel = logLevel
        return i
    }

    /// The resolved settings; a bad one is a usage error of `serve`.
    func settings() throws -> ServerSettings {
        do {
            return try ServerSettings(inputs)
        } catch {
            throw ValidationError(error.description)
        }
    }
}

