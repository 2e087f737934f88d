import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// `cutover serve` as a process: the refusal of SPEC §6 and configuration errors.
@Suite("cutover serve")
struct ServeCommandTests {
    static let binary = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/cutover").path

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ["PATH": "/usr/bin:/bin"].merging(environment) { _, new in new }
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)))
    func refusesToServeOpenOnANonLoopbackAddress() throws {
        let (status, output) = try Self.run(["serve", "--listen", "0.0.0.0:0", "--database-url", "sqlite::memory:"])
        #expect(status != 0)
        #expect(output.contains("refusing to listen on 0.0.0.0:0 without tokens"))
        #expect(output.contains("--admin-token") && output.contains("--insecure"))
        let (envStatus, envOutput) = try Self.run(
            ["serve", "--database-url", "sqlite::memory:"], environment: ["CUTOVER_LISTEN": "0.0.0.0:0"])
        #expect(envStatus != 0)
        #expect(envOutput.contains("refusing to listen"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)), arguments: [
        (["--progress-deadline", "soon"], "--progress-deadline 'soon' is not a duration"),
        (["--auto-promote", "always"], "--auto-promote must be one of first, never"),
        (["--workers", "0"], "--workers '0' must be an integer"),
        (["--listen", "nohost"], "--listen 'nohost' must be host:port"),
        (["--acp-allowed-hosts", "10.0.0.0/99"], "not a valid CIDR"),
        (["--database-url", "mysql://x"], "expected sqlite://PATH"),
        (["--progress-deadline", "9999999999999h"], "is not a duration"),
    ])
    func rejectsBadSettings(_ arguments: [String], _ message: String) throws {
        let (status, output) = try Self.run(["serve", "--listen", "127.0.0.1:0"] + arguments)
        #expect(status != 0)
        #expect(output.contains(message), "\(output)")
    }

    /// Starts `cutover serve` on a free port and returns the process and its base URL once it listens.
    static func startServer(_ extra: [String]) throws -> (Process, String, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        let port = Int.random(in: 20000..<40000)
        process.arguments = ["serve", "--listen", "127.0.0.1:\(port)", "--log-format", "json"] + extra
        process.environment = ["PATH": "/usr/bin:/bin"]
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return (process, "http://127.0.0.1:\(port)", pipe)
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

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)))
    func servesMetricsAndReadinessAndExitsZeroOnSIGTERM() async throws {
        let (process, base, pipe) = try Self.startServer(["--database-url", "sqlite::memory:", "--probe", "none"])
        defer { if process.isRunning { process.terminate() } }
        let ready = try await eventually(within: .seconds(20), "serve to answer /readyz") {
            await Self.fetch(base + "/readyz").flatMap { $0.0 == 200 ? $0 : nil }
        }
        #expect(ready.1.contains("ready"))
        let registered = await Self.fetch(
            base + "/agents/register", method: .POST,
            body: #"{"name":"m","description":"","acp_url":"http://127.0.0.1:9","acp_type":"async","registration_metadata":{"deployment_id":"d1"}}"#)
        #expect(registered?.0 == 200)
        let metrics = try await eventually("reconcile metrics") {
            await Self.fetch(base + "/metrics").flatMap { $0.1.contains("controller_runtime_reconcile_total") ? $0.1 : nil }
        }
        #expect(metrics.contains("cutover_leader 1"))
        #expect(metrics.contains("workqueue_adds_total"))
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let log = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("\"msg\":\"stopped\""))
    }
}

@Suite("cutover demo-agent")
struct DemoAgentTests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: ServeCommandTests.binary)), arguments: Backend.all)
    func registersItselfBecomesProductionAndAnswersRPCs(_ backend: Backend) async throws {
        try await Harness.with(backend) { h in
            let port = Int.random(in: 40000..<50000)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ServeCommandTests.binary)
            process.arguments = [
                "demo-agent", "--port", "\(port)", "--name", "demo", "--deployment-id", "demo-1",
                "--register-with", h.baseURL, "--stream-delay", "10ms",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            defer { process.terminate() }
            let production = try await eventually(within: .seconds(20), "the demo agent to become production") {
                try await h.agent(named: "demo")?.productionDeploymentId
            }
            #expect(production == "demo-1")
            let agentId = try #require(try await h.agent(named: "demo")?.id)
            let echo = try await h.request(.POST, "/agents/\(agentId)/rpc", json: [
                "jsonrpc": "2.0", "id": 3, "method": "message/send", "params": ["content": "hi"],
            ], headers: [("x-demo", "1")])
            #expect(echo.status == 200)
            #expect(echo.json["result"]?["method"] == "message/send")
            #expect(echo.json["result"]?["deployment"] == "demo-1")
            #expect(echo.json["result"]?["headers"]?["x-demo"] == "1")
            let stream = try await h.request(.POST, "/agents/name/demo/rpc", json: [
                "id": "s", "method": "message/send", "params": ["stream": true],
            ])
            #expect(stream.headers.first(name: "content-type") == "application/x-ndjson")
            #expect(stream.text.split(separator: "\n").count == 3)
        }
    }
}
