import ArgumentParser
import AsyncHTTPClient
import CutoverCore
import Foundation
import Hummingbird
import Logging
import NIOCore

/// A small ACP agent for walkthroughs, tests and benchmarks, answering `/api` as an agentex-sdk pod does
/// (the platform's envelope in, JSON-RPC out): `message/send` echoes the user's text as the agent's
/// message, as NDJSON TaskMessageUpdates (word by word with `stream: true`); `task/create` answers null,
/// `event/send` and `task/cancel` `{"status": "processing"}`; there is no `task/interrupt` handler.
struct DemoAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-agent", abstract: "Run a demo ACP agent that can register itself like an agentex-sdk pod.")

    @Option(help: "Port to serve on (127.0.0.1).") var port: Int
    @Option(help: "Host to bind.") var host = "127.0.0.1"
    @Option(help: "Agent name used when registering.") var name = "demo"
    @Option(help: "acp_type used when registering: sync | async | agentic.") var acpType = "sync"
    @Option(help: "Register as this deployment (registration_metadata.deployment_id).") var deploymentId: String?
    @Option(help: ArgumentHelp(
        "Image to register the deployment with (registration_metadata.docker_image). (default: cutover-demo:<deployment id>)",
        valueName: "image"))
    var dockerImage: String?
    @Option(help: "Cutover URL to register with, e.g. http://127.0.0.1:8080.") var registerWith: String?
    @Option(help: "Registration bearer token.") var token: String?
    @Option(help: "Delay between streamed lines (e.g. 100ms).") var streamDelay = "50ms"

    func run() async throws {
        let delay = Duration.parse(streamDelay) ?? .milliseconds(50)
        let identity = deploymentId ?? "legacy"
        let router = Router()
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: #"{"status":"healthy"}"#)))
        }
        router.post("/api") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 10 << 20)
            let rpc = (try? JSONCodec.parse(body.readableBytesView))?.objectValue ?? [:]
            return DemoAgent.answer(rpc, deployment: identity, delay: delay)
        }
        var logger = Logger(label: "demo-agent")
        logger.logLevel = .warning
        let registration = registerWith.map { url in
            { @Sendable in try await register(with: url) }
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "demo-agent"),
            onServerRunning: { _ in
                say("demo-agent listening on http://\(host):\(port)")
                if let registration {
                    do { try await registration() } catch { say("registration failed: \(error)") }
                }
            },
            logger: logger)
        try await app.runService()
    }

    /// Registers the way agentex-sdk pods do: a plain POST of the pod's identity.
    func register(with base: String) async throws {
        var metadata: JSONValue = .null
        if let deploymentId {
            // Without an image the deployment would inherit the agent's last one, which names another build.
            let image = dockerImage ?? "cutover-demo:\(deploymentId)"
            metadata = ["deployment_id": .string(deploymentId), "docker_image": .string(image)]
        } else if let dockerImage {
            metadata = ["docker_image": .string(dockerImage)]
        }
        let body: JSONValue = [
            "name": .string(name), "description": "demo agent", "acp_url": .string("http://\(host):\(port)"),
            "acp_type": .string(acpType), "registration_metadata": metadata, "principal_context": nil,
        ]
        var request = HTTPClientRequest(url: base + "/agents/register")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        request.body = .bytes(ByteBuffer(bytes: JSONCodec.serialize(body)))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let reply = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else {
            throw ValidationError("registration answered \(response.status.code): \(String(buffer: reply))")
        }
        say("registered with \(base) as \(name)\(deploymentId.map { " deployment \($0)" } ?? "")")
    }
}

/// One line on stdout, written at once: `print` is block-buffered when stdout is a pipe or file, so a
/// script waiting for "listening" would otherwise wait until the agent exits.
extension DemoAgent {
    static func answer(_ rpc: [String: JSONValue], deployment: String, delay: Duration) -> Response {
        func json(_ value: JSONValue) -> Response {
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: JSONCodec.serialize(value))))
        }
        // Like the SDK: a request without an id is a notification, answered with a bare null.
        guard let id = rpc["id"], id != .null else { return json(.null) }
        let params = rpc["params"]?.objectValue ?? [:]
        @Sendable func reply(_ result: JSONValue) -> JSONValue { ["jsonrpc": "2.0", "id": id, "result": result, "error": nil] }
        switch rpc["method"]?.stringValue {
        case "task/create":
            return json(reply(.null))
        case "event/send", "task/cancel":
            return json(reply(["status": "processing"]))
        case "message/send":
            let text = params["content"]?.objectValue?["content"]?.stringValue ?? ""
            let words = "\(deployment) heard: \(text)".split(separator: " ").map(String.init)
            let full: JSONValue = [
                "type": "full", "index": 0, "parent_task_message": nil,
                "content": ["type": "text", "author": "agent", "content": .string(words.joined(separator: " ")), "format": "plain", "style": "static"],
            ]
            let stream = params["stream"] == .bool(true)
            return Response(
                status: .ok, headers: [.contentType: "application/x-ndjson"],
                body: .init { writer in
                    if stream {
                        for (i, word) in words.enumerated() {
                            let delta: JSONValue = [
                                "type": "delta", "index": 0, "parent_task_message": nil,
                                "delta": ["type": "text", "text_delta": .string(i == 0 ? word : " " + word)],
                            ]
                            try await writer.write(ByteBuffer(bytes: JSONCodec.serialize(reply(delta)) + [0x0A]))
                            try await Task.sleep(for: delay)
                        }
                    }
                    try await writer.write(ByteBuffer(bytes: JSONCodec.serialize(reply(full)) + [0x0A]))
                    try await writer.finish(nil)
                })
        default:
            let error: JSONValue = ["code": -32601, "message": .string("Method \(rpc["method"]?.stringValue ?? "") not found"), "data": nil]
            return json(["jsonrpc": "2.0", "id": id, "result": nil, "error": error])
        }
    }
}

private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
