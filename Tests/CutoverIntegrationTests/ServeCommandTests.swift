import AsyncHTTPClient
import CutoverCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

/// `cutover serve` and `cutover migrate` as processes: start-up refusals and failures, configuration
/// errors, `--help`, logs, exit status.
@Suite("cutover serve")
struct ServeCommandTests {
    /// `CUTOVER_BIN` picks another build, as in `hack/compat-test.sh`.
    static let binary = ProcessInfo.processInfo.environment["CUTOVER_BIN"] ?? URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/cutover").path
    static var built: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    struct Outcome {
        var status: Int32
        var output: String
        var elapsed: Duration
        /// Non-empty output lines.
        var lines: [Substring] { output.split(separator: "\n") }
    }

    /// Runs the binary to completion (killed after `timeout`, so a hang fails the test instead of stalling it).
    static func run(
        _ arguments: [String], environment: [String: String] = [:], directory: URL? = nil,
        timeout: Duration = .seconds(30)
    ) async throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ["PATH": "/usr/bin:/bin"].merging(environment) { _, new in new }
        if let directory { process.currentDirectoryURL = directory }
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        let start = ContinuousClock.now
        try process.run()
        let output = OutputCollector(pipe)
        let deadline = start + timeout
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let elapsed = ContinuousClock.now - start
        _ = await output.waitForEnd(within: .seconds(5))
        return Outcome(status: process.terminationStatus, output: output.text, elapsed: elapsed)
    }

    /// A port on 127.0.0.1 that was free a moment ago.
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(channel.localAddress?.port)
        try await channel.close()
        return port
    }

    @Test(.enabled(if: built))
    func refusesToServeOpenOnANonLoopbackAddress() async throws {
        let open = try await Self.run(["serve", "--listen", "0.0.0.0:0", "--database-url", "sqlite::memory:"])
        #expect(open.status != 0)
        #expect(open.output.contains("refusing to listen on 0.0.0.0:0 without tokens"))
        #expect(open.output.contains("--admin-token") && open.output.contains("--insecure"))
        #expect(!open.output.contains("Usage: cutover <subcommand>"), "the root usage is no help here: \(open.output)")
        let fromEnvironment = try await Self.run(
            ["serve", "--database-url", "sqlite::memory:"], environment: ["CUTOVER_LISTEN": "0.0.0.0:0"])
        #expect(fromEnvironment.status != 0)
        #expect(fromEnvironment.output.contains("refusing to listen"))
    }

    @Test(.enabled(if: built), arguments: [
        (["--progress-deadline", "soon"], "--progress-deadline 'soon' is not a duration"),
        (["--progress-deadline", "0s"], "--progress-deadline '0s' must be positive"),
        (["--progress-deadline", "-5m"], "--progress-deadline '-5m' must be positive"),
        (["--rpc-timeout=-1s"], "--rpc-timeout '-1s' must be positive"),
        (["--auto-promote", "always"], "--auto-promote 'always' must be one of first, never"),
        (["--workers", "0"], "--workers '0' must be an integer ≥ 1"),
        (["--workers", "-2"], "--workers '-2' must be an integer ≥ 1"),
        (["--listen", "nohost"], "--listen 'nohost' must be host:port"),
        (["--acp-allowed-hosts", "10.0.0.0/99"], "--acp-allowed-hosts: '10.0.0.0/99' is not a valid CIDR"),
        (["--database-url", "mysql://x"], "--database-url: expected sqlite://PATH"),
        (["--progress-deadline", "9999999999999h"], "is not a duration"),
        (["--log-level", "loud"], "--log-level 'loud' must be trace"),
    ])
    func rejectsBadSettings(_ arguments: [String], _ message: String) async throws {
        let outcome = try await Self.run(["serve", "--listen", "127.0.0.1:0"] + arguments)
        #expect(outcome.status != 0)
        #expect(outcome.output.contains(message), "\(outcome.output)")
        #expect(!outcome.output.contains("invalid request"), "\(outcome.output)")
        #expect(!outcome.output.contains("Usage: cutover <subcommand>"), "\(outcome.output)")
    }

    @Test(.enabled(if: built), arguments: [
        (["CUTOVER_PROGRESS_DEADLINE": "abc"], "CUTOVER_PROGRESS_DEADLINE 'abc' is not a duration"),
        (["CUTOVER_RESYNC_INTERVAL": "0s"], "CUTOVER_RESYNC_INTERVAL '0s' must be positive"),
        (["CUTOVER_WORKERS": "many"], "CUTOVER_WORKERS 'many' must be an integer ≥ 1"),
        (["CUTOVER_PROBE": "tcp"], "CUTOVER_PROBE 'tcp' must be one of"),
        (["CUTOVER_DATABASE_URL": "mysql://x"], "CUTOVER_DATABASE_URL: expected sqlite://PATH"),
        (["CUTOVER_ACP_ALLOWED_HOSTS": "10.0.0.0/99"], "CUTOVER_ACP_ALLOWED_HOSTS: '10.0.0.0/99' is not a valid CIDR"),
    ])
    func reportsABadVariableByItsName(_ environment: [String: String], _ message: String) async throws {
        let outcome = try await Self.run(["serve", "--listen", "127.0.0.1:0"], environment: environment)
        #expect(outcome.status != 0)
        #expect(outcome.output.contains(message), "\(outcome.output)")
        #expect(!outcome.output.contains("Usage: cutover <subcommand>"), "\(outcome.output)")
    }

    @Test(.enabled(if: built))
    func blamesTheFlagWhenBothAreSetAndTheVariableWhenAlone() async throws {
        let alone = try await Self.run(
            ["serve", "--listen", "127.0.0.1:0"], environment: ["CUTOVER_PROGRESS_DEADLINE": "abc"])
        #expect(alone.output.contains("CUTOVER_PROGRESS_DEADLINE 'abc' is not a duration"), "\(alone.output)")
        let both = try await Self.run(
            ["serve", "--listen", "127.0.0.1:0", "--progress-deadline", "soon"],
            environment: ["CUTOVER_PROGRESS_DEADLINE": "abc"])
        #expect(both.status != 0)
        #expect(both.output.contains("--progress-deadline 'soon' is not a duration"), "\(both.output)")
    }

    @Test(.enabled(if: built), arguments: ["json", "text"])
    func exitsNonZeroWhenTheAddressIsTaken(_ format: String) async throws {
        let taken = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(taken.localAddress?.port)
        let outcome = try await Self.run([
            "serve", "--listen", "127.0.0.1:\(port)", "--database-url", "sqlite::memory:", "--log-format", format,
        ])
        try await taken.close()
        #expect(outcome.status != 0)
        let cause = "cannot listen on 127.0.0.1:\(port): address already in use"
        #expect(outcome.output.contains(cause), "\(outcome.output)")
        if format == "json" {
            #expect(outcome.lines.filter { $0.contains(#""level":"error""#) }.count == 1, "\(outcome.output)")
        } else {
            // Time, level, then the logger's label and the message.
            let errors = outcome.lines.map { $0.split(separator: " ", maxSplits: 2) }.filter { $0.count == 3 && $0[1] == "error" }
            #expect(errors.count == 1, "\(outcome.output)")
            #expect(errors.first?[2].hasPrefix("cutover: \(cause)") == true, "\(outcome.output)")
        }
    }

    /// Nothing listens on port 1: the connection is refused at once, and start-up must say so once and stop,
    /// not retry in silence or bury the cause in a stack of lines.
    @Test(.enabled(if: built), arguments: [
        ["serve", "--listen", "127.0.0.1:0", "--log-format", "json"],
        ["migrate"],
    ])
    func reportsAnUnreachableDatabaseInOneLine(_ command: [String]) async throws {
        let outcome = try await Self.run(command + ["--database-url", "postgres://postgres:secret@127.0.0.1:1/db"])
        #expect(outcome.status != 0)
        #expect(outcome.elapsed < .seconds(15), "took \(outcome.elapsed)")
        #expect(outcome.output.contains("cannot reach the database at postgres://postgres:***@127.0.0.1:1/db"), "\(outcome.output)")
        #expect(outcome.output.contains("connection refused"), "\(outcome.output)")
        #expect(!outcome.output.contains("secret"))
        #expect(outcome.lines.count == 1, "\(outcome.output)")
    }

    @Test(.enabled(if: built))
    func createsTheDirectoryOfASQLiteDatabase() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cutover-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let migrated = try await Self.run(["migrate", "--database-url", "sqlite://data/cutover.sqlite"], directory: directory)
        #expect(migrated.status == 0, "\(migrated.output)")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("data/cutover.sqlite").path))

        #expect(FileManager.default.createFile(atPath: directory.appendingPathComponent("file").path, contents: Data()))
        let blocked = try await Self.run(["migrate", "--database-url", "sqlite://file/cutover.sqlite"], directory: directory)
        #expect(blocked.status != 0)
        #expect(blocked.output.contains("cannot create the directory file for the database at sqlite://file/cutover.sqlite"),
                "\(blocked.output)")
    }

    @Test(.enabled(if: built))
    func helpShowsEveryDefaultAndVariable() async throws {
        let help = try await Self.run(["serve", "--help"])
        #expect(help.status == 0)
        let flat = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(flat.contains("CUTOVER_RPC_TIMEOUT"))
        #expect(flat.contains("default: 60s"))
        for retention in ["--gc-interval", "--retain-previous-production", "--retain-inactive", "--failed-ttl"] {
            #expect(flat.contains(retention), "\(retention) is offered")
        }
        // One block per option: its first line starts with "  -", continuation lines are indented further.
        var blocks: [String] = []
        for line in help.output.split(separator: "\n").drop(while: { !$0.hasPrefix("OPTIONS:") }).dropFirst() {
            if line.hasPrefix("  -") { blocks.append(String(line)) } else if !blocks.isEmpty { blocks[blocks.count - 1] += " " + line }
        }
        let options = blocks.filter { !$0.contains("--help") }.map { $0.split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        #expect(options.count == 23, "\(options)")
        for option in options {
            #expect(option.contains("(default: ") && option.contains("env: CUTOVER_"), "\(option)")
        }
        #expect(options.contains { $0.hasPrefix("--resync-interval") && $0.contains("re-queued") })
        #expect(options.contains { $0.hasPrefix("--rpc-timeout") && $0.contains("silence") && $0.contains("504") })
    }

    /// Starts `cutover serve` on a free port and returns the process, its base URL and its log.
    /// Another test may bind the free port first (it was free when asked): then it tries another one.
    static func startServer(_ extra: [String], host: String = "127.0.0.1") async throws -> (Process, String, OutputCollector) {
        for _ in 0..<3 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            let port = try await freePort()
            process.arguments = ["serve", "--listen", "\(host):\(port)", "--log-format", "json"] + extra
            process.environment = ["PATH": "/usr/bin:/bin"]
            let pipe = Pipe()
            process.standardError = pipe
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let log = OutputCollector(pipe)
            let deadline = ContinuousClock.now + .seconds(20)
            // Until it listens, fails to, or exits: a warning before listening (open registration) must not
            // end the wait, or a port taken by a parallel test after the warning is never retried.
            while ContinuousClock.now < deadline, process.isRunning, !log.text.contains("cannot listen"),
                !log.text.contains("\"msg\":\"listening\"")
            {
                try await Task.sleep(for: .milliseconds(20))
            }
            if log.text.contains("cannot listen") {
                process.waitUntilExit()
                continue
            }
            return (process, "http://127.0.0.1:\(port)", log)
        }
        throw TestFailure("no free port for cutover serve after 3 tries")
    }

    /// Polls `/readyz` until it answers 200 (bounded); records the server's log and last answer if not.
    static func waitUntilReady(_ base: String, log: OutputCollector) async -> (Int, String)? {
        var last: (Int, String)?
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            last = await fetch(base + "/readyz")
            if last?.0 == 200 { return last }
            try? await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("serve never answered /readyz 200; last answer \(String(describing: last)); log:\n\(log.text)")
        return nil
    }

    /// SIGTERM, then the exit status; a server still running 30 s later is killed and reported, so that a
    /// shutdown that hangs fails its test instead of stalling the whole run.
    static func stop(_ process: Process) async -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(30)
        // Polled with `Task.sleep`: `usleep` would hold one of the few threads every test's async code runs on.
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            Issue.record("cutover serve (pid \(process.processIdentifier)) was still running 30 s after SIGTERM")
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    static func fetch(_ url: String, method: HTTPMethod = .GET, body: String? = nil) async -> (Int, String)? {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        guard let response = try? await Harness.http.execute(request, timeout: .seconds(5)),
            let bytes = try? await response.body.collect(upTo: 1 << 20)
        else { return nil }
        return (Int(response.status.code), String(buffer: bytes))
    }

    @Test(.enabled(if: built))
    func servesMetricsAndReadinessAndExitsZeroOnSIGTERM() async throws {
        let (process, base, log) = try await Self.startServer(["--database-url", "sqlite::memory:", "--probe", "none"])
        defer { if process.isRunning { process.terminate() } }
        let ready = await Self.waitUntilReady(base, log: log)
        #expect(ready?.1.contains("ready") == true)
        let registered = await Self.fetch(
            base + "/agents/register", method: .POST,
            body: #"{"name":"m","description":"","acp_url":"http://127.0.0.1:9","acp_type":"async","registration_metadata":{"deployment_id":"d1"}}"#)
        #expect(registered?.0 == 200)
        let metrics = try await eventually("the auto-promotion in the metrics") {
            await Self.fetch(base + "/metrics").flatMap { $0.1.contains(#"cutover_promotions_total{kind="auto"} 1"#) ? $0.1 : nil }
        }
        #expect(metrics.contains("cutover_leader 1"))
        for name in ["workqueue_adds_total", "workqueue_depth", "workqueue_queue_duration_seconds",
                     "workqueue_work_duration_seconds", "controller_runtime_reconcile_time_seconds"] {
            #expect(metrics.contains(name), "\(name)")
        }
        #expect(metrics.contains(#"controller_runtime_reconcile_total{controller="deployment",result="success"}"#))
        #expect(metrics.contains(#"controller_runtime_reconcile_total{controller="retention",result="requeue_after"}"#)
            || metrics.contains(#"controller_runtime_reconcile_total{controller="retention",result="success"}"#))
        #expect(metrics.contains(#"cutover_deployments{status="Ready"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"cutover_deployments{status="Pending"} 0"#))
        #expect(await Self.stop(process) == 0)
        _ = await log.waitForEnd(within: .seconds(5))
        #expect(log.text.contains("\"msg\":\"stopped\""))
    }

    @Test(.enabled(if: built))
    func aSIGTERMUnderLoadDrainsAndExitsZeroWithCleanLogs() async throws {
        let (process, base, log) = try await Self.startServer(["--database-url", "sqlite::memory:", "--probe", "none"])
        defer { if process.isRunning { process.terminate() } }
        #expect(await log.wait(for: "listening", within: .seconds(20)))
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        for n in 0..<400 where !Task.isCancelled {
                            _ = await Self.fetch(
                                base + "/agents/register", method: .POST,
                                body: #"{"name":"load","acp_url":"http://127.0.0.1:9","registration_metadata":{"deployment_id":"w\#(worker)-\#(n)"}}"#)
                        }
                    }
                }
            }
        }
        try await Task.sleep(for: .milliseconds(700))
        #expect(await Self.stop(process) == 0)
        load.cancel()
        await load.value
        _ = await log.waitForEnd(within: .seconds(5))
        let noisy = log.text.split(separator: "\n").filter { !$0.contains(#""level":"info""#) && !$0.contains(#""level":"notice""#) }
        #expect(noisy.isEmpty, "only info lines on a graceful shutdown under load: \(noisy.prefix(5))")
        #expect(log.text.contains(#""msg":"stopped""#))
    }

    @Test(.enabled(if: built))
    func logsListeningOnceAsHostAndPort() async throws {
        let (process, base, log) = try await Self.startServer(["--database-url", "sqlite::memory:", "--probe", "none"])
        defer { if process.isRunning { process.terminate() } }
        let address = String(base.dropFirst("http://".count))
        #expect(await log.wait(for: "\"address\":\"\(address)\"", within: .seconds(20)), "\(log.text)")
        #expect(await Self.stop(process) == 0)
        _ = await log.waitForEnd(within: .seconds(5))
        let lines = log.text.split(separator: "\n")
        #expect(lines.filter { $0.contains("listening") }.count == 1, "\(log.text)")
        #expect(lines.contains { $0.contains(#""migrations_applied":"1,2,3,4,5,6,7,8,9,10,11""#) }, "a plain list, not \"[1, 2, 3, 4]\": \(log.text)")
    }

    /// On PostgreSQL async code runs on the event loops, which carry the database connections; on SQLite,
    /// whose queries run on sqlite-nio's threads, on Swift's own pool.
    @Test(.enabled(if: built), arguments: Backend.all)
    func runsAsyncCodeOnTheEventLoopsOnPostgreSQL(_ backend: Backend) async throws {
        guard backend == .postgres else { return try await Self.expectExecutor("concurrency pool", url: "sqlite::memory:") }
        try await Backend.withFreshPostgresDatabase { database in
            try await Self.expectExecutor("event loops", url: try Backend.postgresURL(of: database))
        }
    }

    static func expectExecutor(_ executor: String, url: String) async throws {
        let (process, base, log) = try await startServer(["--database-url", url, "--probe", "none"])
        defer { if process.isRunning { process.terminate() } }
        #expect(await log.wait(for: #""executor":"\#(executor)""#, within: .seconds(20)), "\(log.text)")
        #expect(await waitUntilReady(base, log: log) != nil)
        #expect(!log.text.contains("executor is not installed"), "\(log.text)")
        #expect(await stop(process) == 0)
    }

    @Test(.enabled(if: built))
    func warnsWhenOnlyAdminTokensGuardANonLoopbackAddress() async throws {
        let (open, _, openLog) = try await Self.startServer(
            ["--database-url", "sqlite::memory:", "--admin-token", "a"], host: "0.0.0.0")
        defer { if open.isRunning { open.terminate() } }
        #expect(await openLog.wait(for: "registration is open", within: .seconds(20)), "\(openLog.text)")
        let warning = try #require(openLog.text.split(separator: "\n").first { $0.contains("registration is open") })
        #expect(warning.contains(#""level":"warning""#))
        #expect(warning.contains("register pods") && warning.contains("legacy registration"))
        #expect(warning.contains("--registration-token") && warning.contains("CUTOVER_REGISTRATION_TOKENS"))
        // The warning comes before the signal handlers are installed; a SIGTERM then would just kill it.
        #expect(await openLog.wait(for: "\"msg\":\"listening\"", within: .seconds(20)), "\(openLog.text)")
        #expect(await Self.stop(open) == 0)

        let (guarded, _, guardedLog) = try await Self.startServer(
            ["--database-url", "sqlite::memory:", "--admin-token", "a", "--registration-token", "r"], host: "0.0.0.0")
        defer { if guarded.isRunning { guarded.terminate() } }
        #expect(await guardedLog.wait(for: "\"msg\":\"listening\"", within: .seconds(20)), "\(guardedLog.text)")
        #expect(await Self.stop(guarded) == 0)
        #expect(!guardedLog.text.contains("registration is open"))
    }
}

/// Everything a child process writes to a pipe, read as it arrives so a test can wait for a line while
/// the process still runs.
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private var ended = false

    init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.withLock { data.append(chunk) }
            }
            lock.withLock { ended = true }
        }
    }

    var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
    private var isEnded: Bool { lock.withLock { ended } }

    /// Whether `needle` appeared within `limit`.
    func wait(for needle: String, within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if text.contains(needle) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return text.contains(needle)
    }

    /// Whether the writer closed the pipe within `limit`.
    func waitForEnd(within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while !isEnded, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return isEnded
    }
}

@Suite("cutover demo-agent")
struct DemoAgentTests {
    static func start(_ arguments: [String], stdout: Any = FileHandle.nullDevice) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ServeCommandTests.binary)
        process.arguments = ["demo-agent"] + arguments
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    @Test(.enabled(if: ServeCommandTests.built), arguments: Backend.all)
    func registersItselfBecomesProductionAndAnswersRPCs(_ backend: Backend) async throws {
        try await Harness.with(backend) { h in
            let port = try await ServeCommandTests.freePort()
            let process = try Self.start([
                "--port", "\(port)", "--name", "demo", "--deployment-id", "demo-1",
                "--register-with", h.baseURL, "--stream-delay", "10ms",
            ])
            defer { process.terminate() }
            let production = try await eventually(within: .seconds(20), "the demo agent to become production") {
                try await h.agent(named: "demo")?.productionDeploymentId
            }
            #expect(production == "demo-1")
            let agentId = try #require(try await h.agent(named: "demo")?.id)
            let hi: JSONValue = ["type": "text", "author": "user", "content": "hi there"]
            let echo = try await h.request(.POST, "/agents/\(agentId)/rpc", json: [
                "jsonrpc": "2.0", "id": 3, "method": "message/send", "params": ["content": hi],
            ])
            #expect(echo.status == 200, "\(echo.text)")
            #expect(echo.json["id"] == 3)
            let messages: [JSONValue] = if case .array(let items)? = echo.json["result"] { items } else { [] }
            #expect(messages.first?["content"]?["content"] == "demo-1 heard: hi there")
            let stream = try await h.request(.POST, "/agents/name/demo/rpc", json: [
                "id": "s", "method": "message/send", "params": ["stream": true, "content": hi],
            ])
            #expect(stream.headers.first(name: "content-type") == "application/x-ndjson")
            #expect(stream.text.split(separator: "\n").count == 5, "four words, then the whole message: \(stream.text)")
        }
    }

    /// A deployment registered without an image would inherit the agent's last one, naming another build.
    @Test(.enabled(if: ServeCommandTests.built))
    func registersItsOwnDockerImage() async throws {
        try await Harness.with(.sqlite) { h in
            let earlier = try await h.register("hello", url: "http://127.0.0.1:9", deploymentId: "v2", image: "hello:v2")
            let agentId = try #require(earlier["id"]?.stringValue)
            let base = try await ServeCommandTests.freePort()
            let second = try await ServeCommandTests.freePort()
            let byDefault = try Self.start([
                "--port", "\(base)", "--name", "hello", "--deployment-id", "v4", "--register-with", h.baseURL,
            ])
            defer { byDefault.terminate() }
            let chosen = try Self.start([
                "--port", "\(second)", "--name", "hello", "--deployment-id", "v5", "--docker-image", "registry/hello:5",
                "--register-with", h.baseURL,
            ])
            defer { chosen.terminate() }
            let v4 = try await eventually(within: .seconds(20), "v4 to register") { try await h.deployment(agentId, "v4") }
            #expect(v4.dockerImage == "cutover-demo:v4")
            let v5 = try await eventually(within: .seconds(20), "v5 to register") { try await h.deployment(agentId, "v5") }
            #expect(v5.dockerImage == "registry/hello:5")
        }
    }

    /// A script that starts the agent in the background waits for this line; it must not sit in a buffer.
    @Test(.enabled(if: ServeCommandTests.built))
    func announcesItselfWhileRunningWithStdoutRedirected() async throws {
        let pipe = Pipe()
        let port = try await ServeCommandTests.freePort()
        let process = try Self.start(["--port", "\(port)"], stdout: pipe)
        defer { process.terminate() }
        let output = OutputCollector(pipe)
        #expect(await output.wait(for: "demo-agent listening on http://127.0.0.1:\(port)", within: .seconds(20)), "\(output.text)")
    }
}
