import AsyncHTTPClient
import CutoverCore
import Foundation
import NIOCore
import NIOHTTP1

/// The client commands' view of a Cutover server: JSON requests with the caller's token, the answer's
/// bytes kept as sent (for `-o json`), errors as `CLIError`s carrying the server's own message.
public final class APIClient: Sendable {
    public let server: String
    let token: String?
    let http: HTTPClient
    /// Requests other than watches must answer within this.
    static let requestTimeout: TimeAmount = .seconds(30)
    /// A watch sends a keep-alive line every 15 s; this much silence means the connection is dead.
    static let readTimeout: TimeAmount = .seconds(45)

    public struct Answer: Sendable {
        public var status: Int
        public var bytes: [UInt8]
        public var json: JSONValue
    }

    public init(server: String, token: String?) {
        var trimmed = server
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.server = trimmed
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: Self.readTimeout))
        configuration.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    /// The answer to `method path`, throwing the server's message for anything but 200.
    @discardableResult
    public func call(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil) async throws -> Answer {
        let answer = try await send(method, path, body: body)
        guard answer.status == 200 else {
            throw CLIError.api(status: answer.status, message: answer.json.objectValue?["message"]?.stringValue ?? "")
        }
        return answer
    }

    /// The answer whatever its status; throws only when the server cannot be reached.
    public func send(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil) async throws -> Answer {
        let request = makeRequest(method, path, body: body)
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: Self.requestTimeout)
            bytes = try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw CLIError.unreachable(server, Self.describe(error))
        }
        let raw = Array(bytes.readableBytesView)
        return Answer(status: Int(response.status.code), bytes: raw, json: (try? JSONCodec.parse(raw)) ?? .null)
    }

    /// Opens a streamed GET: the status and, on 200, the body's chunks as they arrive.
    func stream(_ path: String) async throws -> HTTPClientResponse {
        let request = makeRequest(.GET, path, body: nil)
        do {
            return try await http.execute(request, deadline: .distantFuture)
        } catch {
            throw CLIError.unreachable(server, Self.describe(error))
        }
    }

    private func makeRequest(_ method: HTTPMethod, _ path: String, body: JSONValue?) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: server + path)
        request.method = method
        request.headers.add(name: "accept", value: "application/json")
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: JSONCodec.serialize(body)))
        }
        return request
    }

    /// A short cause for "cannot reach": the words a person recognises rather than a type dump.
    static func describe(_ error: any Error) -> String {
        if let error = error as? CLIError { return error.message }
        let text = String(describing: error)
        let lowered = text.lowercased()
        if lowered.contains("refused") { return "connection refused" }
        if lowered.contains("connecttimeout") || lowered.contains("connect timeout") { return "connection timed out" }
        if lowered.contains("deadlineexceeded") || lowered.contains("readtimeout") { return "no answer in time" }
        if lowered.contains("unsupported scheme") || lowered.contains("invalidurl") || lowered.contains("emptyhost") {
            return "not a valid http:// URL"
        }
        if lowered.contains("name") && lowered.contains("resolution") || lowered.contains("nodename") {
            return "unknown host"
        }
        if lowered.contains("remoteconnectionclosed") || lowered.contains("connection reset") {
            return "the connection was closed"
        }
        return text
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
func segment(_ text: String) -> String {
    let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
}
