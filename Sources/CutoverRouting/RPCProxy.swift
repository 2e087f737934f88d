import AsyncHTTPClient
import CutoverCore
import NIOCore
import NIOHTTP1

/// What the agent answered: its status and its body, small ones read whole, the rest as they arrive.
public struct ProxiedResponse: Sendable {
    public enum Body: Sendable {
        /// A small answer of known length, read whole so it goes out in one write.
        case complete(ByteBuffer)
        /// Anything streamed or large: passed through chunk by chunk as the agent writes it.
        case stream(UpstreamBody)
    }

    public var status: Int
    public var body: Body
}

/// An agent's streamed answer, passed through as it arrives (from `UpstreamClient` for an `http` agent,
/// from the general client for an `https` one). A silence longer than the client's idle read
/// timeout ends it with an error (the stream is cut, which the client sees) and calls `onStall`.
public struct UpstreamBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    enum Source: Sendable {
        case general(HTTPClientResponse.Body)
        case own(UpstreamClient.Body)
    }

    let source: Source
    public var onStall: @Sendable () -> Void = {}

    init(body: HTTPClientResponse.Body) { source = .general(body) }
    init(stream: UpstreamClient.Body) { source = .own(stream) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        enum Inner {
            case general(HTTPClientResponse.Body.AsyncIterator)
            case own(UpstreamClient.Body.AsyncIterator)
        }

        var inner: Inner
        let onStall: @Sendable () -> Void

        public mutating func next() async throws -> ByteBuffer? {
            do {
                switch inner {
                case .general(var iterator):
                    defer { inner = .general(iterator) }
                    return try await iterator.next()
                case .own(let iterator):
                    return try await iterator.next()
                }
            } catch where error is UpstreamClient.ReadTimeout || (error as? HTTPClientError) == .readTimeout {
                onStall()
                throw error
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        switch source {
        case .general(let body): AsyncIterator(inner: .general(body.makeAsyncIterator()), onStall: onStall)
        case .own(let stream): AsyncIterator(inner: .own(stream.makeAsyncIterator()), onStall: onStall)
        }
    }
}

/// Sends the platform's envelope to `{acp_url}/api`: over Cutover's own keep-alive connections
/// (`UpstreamClient`) for `http` agents, over the shared pooled HTTP client (made by
/// `Outbound.makeClient`) for `https` ones. Either way the idle read timeout bounds the wait for the
/// answer's head and every silence inside its body.
public struct RPCProxy: Sendable {
    let client: HTTPClient
    let upstream: UpstreamClient
    let timeout: Duration

    public init(client: HTTPClient, upstream: UpstreamClient, timeout: Duration) {
        self.client = client
        self.upstream = upstream
        self.timeout = timeout
    }

    /// `errorData` names the agent and deployment in any JSON-RPC error.
    public func forward(
        body: ByteBuffer, to acpURL: String, headers: [(String, String)], errorData: [String: JSONValue]
    ) async throws(JSONRPC.Failure) -> ProxiedResponse {
        let url = URLPath.join(acpURL, "/api")
        guard let target = UpstreamClient.Target(url: url) else {
            return try await forwardOverHTTPS(body: body, to: url, of: acpURL, headers: headers, errorData: errorData)
        }
        do {
            let response = try await upstream.execute(
                target, headers: headers, body: body, idleRead: .microseconds(timeout.microseconds))
            if Self.isReadWhole(response.headers) {
                var whole = ByteBuffer()
                for try await part in response.body { whole.writeImmutableBuffer(part) }
                return ProxiedResponse(status: response.status, body: .complete(whole))
            }
            return ProxiedResponse(status: response.status, body: .stream(UpstreamBody(stream: response.body)))
        } catch where Outbound.isTimeout(error) {
            throw timedOut(errorData)
        } catch where Task.isCancelled {
            throw Self.cancelled(errorData)
        } catch {
            throw Self.unreachable(error, acpURL, errorData)
        }
    }

    /// `url`: the pod's `/api` under `acpURL`, which errors name.
    private func forwardOverHTTPS(
        body: ByteBuffer, to url: String, of acpURL: String, headers: [(String, String)], errorData: [String: JSONValue]
    ) async throws(JSONRPC.Failure) -> ProxiedResponse {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(body)
        do {
            let deadline = NIODeadline.now() + .microseconds(timeout.microseconds)
            let response = try await client.execute(request, deadline: deadline)
            if Self.isReadWhole(response.headers) {
                let body = try await response.body.collect(upTo: Self.wholeLimit)
                return ProxiedResponse(status: Int(response.status.code), body: .complete(body))
            }
            return ProxiedResponse(status: Int(response.status.code), body: .stream(UpstreamBody(body: response.body)))
        } catch where Outbound.isTimeout(error) {
            throw timedOut(errorData)
        } catch is CancellationError {
            throw Self.cancelled(errorData)
        } catch {
            throw Self.unreachable(error, acpURL, errorData)
        }
    }

    private func timedOut(_ data: [String: JSONValue]) -> JSONRPC.Failure {
        JSONRPC.Failure(.upstreamTimeout, 504, "the agent did not answer within \(timeout.formatted)", data: data)
    }

    private static func cancelled(_ data: [String: JSONValue]) -> JSONRPC.Failure {
        JSONRPC.Failure(.upstreamUnreachable, 502, "the request was cancelled", data: data)
    }

    private static func unreachable(_ error: any Error, _ acpURL: String, _ data: [String: JSONValue]) -> JSONRPC.Failure {
        JSONRPC.Failure(
            .upstreamUnreachable, 502, "the agent is unreachable: \(Outbound.describe(error, url: acpURL))", data: data)
    }

    /// A small answer of known length that is not a stream is read whole, so that it goes out in one write.
    static func isReadWhole(_ headers: HTTPHeaders) -> Bool {
        guard let length = headers.first(name: "content-length").flatMap(Int.init) else { return false }
        return length <= wholeLimit && !isStreaming(headers.first(name: "content-type"))
    }

    static let wholeLimit = 64 * 1024

    /// event-stream, octet-stream, ndjson. Searched byte by byte: `contains` of one string in another goes
    /// through the standard library's generic substring search, which showed at 5 % of Cutover's CPU on
    /// the RPC path (most of it looking up generic metadata), and `lowercased()` made a copy.
    static func isStreaming(_ contentType: String?) -> Bool {
        guard var contentType else { return false }
        return contentType.withUTF8 { containsIgnoringCase($0, "stream") || containsIgnoringCase($0, "ndjson") }
    }

    /// Whether `text` holds `word` (lowercase ASCII), whatever the case of `text`'s ASCII letters.
    private static func containsIgnoringCase(_ text: UnsafeBufferPointer<UInt8>, _ word: StaticString) -> Bool {
        let word = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        guard word.count <= text.count else { return false }
        return (0...(text.count - word.count)).contains { start in
            word.indices.allSatisfy { i in
                let byte = text[start + i]
                return ((0x41...0x5A).contains(byte) ? byte | 0x20 : byte) == word[i]
            }
        }
    }
}
