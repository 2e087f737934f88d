import CutoverCore
import CutoverServer
import CutoverStore
import Testing

/// Settings resolution (flag, else variable, else default) and the exposure rule, without a process.
@Suite("Server settings")
struct ServerSettingsTests {
    static func resolve(_ edit: (inout SettingInputs) -> Void = { _ in }, env: [String: String] = [:]) throws(SettingsError)
        -> ServerSettings
    {
        var inputs = SettingInputs()
        edit(&inputs)
        return try ServerSettings(inputs, environment: env, stderrIsTerminal: false)
    }

    static func problem(_ edit: (inout SettingInputs) -> Void = { _ in }, env: [String: String] = [:]) -> String? {
        do {
            _ = try resolve(edit, env: env)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func defaults() throws {
        let s = try Self.resolve()
        #expect(s.database == .sqliteFile("cutover.sqlite"))
        #expect(s.host == "127.0.0.1" && s.port == 8080)
        #expect(s.reconcile == ReconcilePolicy())
        #expect(s.retention == RetentionPolicy())
        #expect(s.gcInterval == .seconds(60) && s.resyncInterval == .seconds(30) && s.rpcTimeout == .seconds(60))
        #expect(s.workers == 4 && s.shutdownGrace == .seconds(30))
        #expect(s.logJSON, "json when stderr is not a terminal")
        #expect(s.adminTokens.isEmpty && s.registrationTokens.isEmpty && !s.insecure)
    }

    @Test func aFlagWinsOverItsVariableAndAnEmptyVariableCountsAsUnset() throws {
        let env = ["CUTOVER_GC_INTERVAL": "5m", "CUTOVER_RETAIN_INACTIVE": "3", "CUTOVER_FAILED_TTL": "",
                   "CUTOVER_ADMIN_TOKENS": "a, b,,c", "CUTOVER_LISTEN": "0.0.0.0:9000"]
        let fromEnv = try Self.resolve(env: env)
        #expect(fromEnv.gcInterval == .seconds(300))
        #expect(fromEnv.retention.retainInactive == 3)
        #expect(fromEnv.retention.failedTTL == .seconds(86_400))
        #expect(fromEnv.adminTokens == ["a", "b", "c"])
        #expect(fromEnv.host == "0.0.0.0" && fromEnv.port == 9000)
        let flagged = try Self.resolve({ $0.gcInterval = "10s"; $0.retainInactive = "0"; $0.adminToken = ["z"] }, env: env)
        #expect(flagged.gcInterval == .seconds(10))
        #expect(flagged.retention.retainInactive == 0)
        #expect(flagged.adminTokens == ["z"])
    }

    @Test func taskAffinityIsOnAndTheDrainAnHourUnlessSet() throws {
        let defaults = try Self.resolve { _ in }
        #expect(defaults.taskAffinity && defaults.retention.taskDrain == .seconds(3600))
        let set = try Self.resolve({ $0.taskAffinity = "off" }, env: ["CUTOVER_TASK_DRAIN": "10m"])
        #expect(!set.taskAffinity && set.retention.taskDrain == .seconds(600))
        #expect(try Self.resolve(env: ["CUTOVER_TASK_AFFINITY": "off"]).taskAffinity == false)
    }

    @Test func theDeletionGraceIsRetentionsGraceToo() throws {
        let s = try Self.resolve { $0.deletionGrace = "2h" }
        #expect(s.deletionGrace == .seconds(7200) && s.retention.deletionGrace == .seconds(7200))
    }

    static func set(_ flag: String, _ value: String, _ i: inout SettingInputs) {
        switch flag {
        case "gc-interval": i.gcInterval = value
        case "failed-ttl": i.failedTtl = value
        case "retain-previous-production": i.retainPreviousProduction = value
        case "workers": i.workers = value
        case "listen": i.listen = value
        case "auto-promote": i.autoPromote = value
        case "database-url": i.databaseURL = value
        case "task-affinity": i.taskAffinity = value
        case "task-drain": i.taskDrain = value
        default: Issue.record("unknown flag \(flag)")
        }
    }

    @Test(arguments: [
        ("gc-interval", "0s", "--gc-interval '0s' must be positive"),
        ("failed-ttl", "-5m", "--failed-ttl '-5m' must be positive"),
        ("retain-previous-production", "-1", "--retain-previous-production '-1' must be an integer ≥ 0"),
        ("workers", "0", "--workers '0' must be an integer ≥ 1"),
        ("listen", "nohost", "--listen 'nohost' must be host:port"),
        ("auto-promote", "always", "--auto-promote 'always' must be one of first, never"),
        ("database-url", "mysql://x", "--database-url: expected sqlite://PATH"),
        ("task-affinity", "sometimes", "--task-affinity 'sometimes' must be on or off"),
        ("task-drain", "0s", "--task-drain '0s' must be positive"),
    ])
    func badFlagsAreNamed(_ flag: String, _ value: String, _ message: String) {
        let problem = Self.problem { Self.set(flag, value, &$0) }
        #expect(problem?.hasPrefix(message) == true, "\(problem ?? "accepted")")
    }

    @Test func badVariablesAreNamedByTheVariable() {
        #expect(Self.problem(env: ["CUTOVER_RETAIN_INACTIVE": "many"])?.hasPrefix("CUTOVER_RETAIN_INACTIVE 'many'") == true)
        #expect(Self.problem(env: ["CUTOVER_GC_INTERVAL": "soon"])?.hasPrefix("CUTOVER_GC_INTERVAL 'soon' is not a duration") == true)
        #expect(Self.problem(env: ["CUTOVER_DATABASE_URL": "x"])?.hasPrefix("CUTOVER_DATABASE_URL:") == true)
    }

    struct Exposure: Sendable, CustomTestStringConvertible {
        var listen: String
        var admin: [String] = []
        var registration: [String] = []
        var insecure = false
        var refused: Bool
        var warns: Bool
        var testDescription: String { "\(listen) admin=\(admin) registration=\(registration) insecure=\(insecure)" }
    }

    @Test("open only on loopback unless --insecure; a warning when admin tokens leave registration open", arguments: [
        Exposure(listen: "127.0.0.1:0", refused: false, warns: false),
        Exposure(listen: "127.5.5.5:0", refused: false, warns: false),
        Exposure(listen: "localhost:0", refused: false, warns: false),
        Exposure(listen: "[::1]:0", refused: false, warns: false),
        Exposure(listen: "0.0.0.0:0", refused: true, warns: false),
        Exposure(listen: "10.0.0.1:0", refused: true, warns: false),
        Exposure(listen: "0.0.0.0:0", insecure: true, refused: false, warns: false),
        Exposure(listen: "0.0.0.0:0", admin: ["a"], refused: false, warns: true),
        Exposure(listen: "0.0.0.0:0", admin: ["a"], registration: ["r"], refused: false, warns: false),
        Exposure(listen: "0.0.0.0:0", registration: ["r"], refused: false, warns: false),
        Exposure(listen: "127.0.0.1:0", admin: ["a"], refused: false, warns: false),
    ])
    func exposure(_ c: Exposure) throws {
        let s = try Self.resolve { i in
            i.listen = c.listen
            i.adminToken = c.admin
            i.registrationToken = c.registration
            i.insecure = c.insecure
        }
        var refusal: String?
        do { try s.checkExposure() } catch { refusal = error.description }
        #expect((refusal != nil) == c.refused)
        if let refusal {
            #expect(refusal.contains("--admin-token") && refusal.contains("--insecure") && refusal.contains("127.0.0.1"))
        }
        #expect((s.openRegistrationWarning != nil) == c.warns)
        if let warning = s.openRegistrationWarning { #expect(warning.contains("--registration-token")) }
    }
}
