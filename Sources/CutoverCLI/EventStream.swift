import AsyncHTTPClient
import CutoverCore
import NIOCore

/// An agent's events as they commit, read from the API's watch (`GET /agents/{id}/events?watch=true`,
/// NDJSON). When the connection drops it reconnects after the last event it delivered, so nothing is
/// missed or repeated; it gives up when the server stays unreachable for `reconnectFor`.
public struct EventStream: AsyncSequence, Sendable {
    public typealias Element = Line
    let client: APIClient
    let agentId: String
    let after: String?
    var reconnectFor: Duration = .seconds(30)

    /// One event: its value and the exact line the server sent.
    public struct Line: Sendable {
        public var event: JSONValue
        public var text: String
        public var id: String? { event.objectValue?["id"]?.stringValue }
        public var deploymentId: String? { event.objectValue?["deployment_id"]?.stringValue }
    }

    public init(client: APIClient, agentId: String, after: String?) {
        self.client = client
        self.agentId = agentId
        self.after = after
    }

    public func makeAsyncIterator() -> AsyncThrowingStream<Line, any Error>.Iterator {
        let (stream, sink) = AsyncThrowingStream<Line, any Error>.makeStream()
        let task = Task { await run(sink) }
        sink.onTermination = { _ in task.cancel() }
        return stream.makeAsyncIterator()
    }

    private func run(_ sink: AsyncThrowingStream<Line, any Error>.Continuation) async {
        var last = after
        var connectedOnce = false
        var unreachableSince: ContinuousClock.Instant?
        var backoff: Duration = .milliseconds(100)
        while !Task.isCancelled {
            do {
                var path = "/agents/\(segment(agentId))/events?watch=true"
                if let last { path += "&after=\(segment(last))" }
                let response = try await client.stream(path)
                guard response.status == .ok else {
                    let body = try await response.body.collect(upTo: 1 << 20)
                    let message = (try? JSONCodec.parse(body.readableBytesView))?.objectValue?["message"]?.stringValue ?? ""
                    throw CLIError.api(status: Int(response.status.code), message: message)
                }
                connectedOnce = true
                unreachableSince = nil
                backoff = .milliseconds(100)
                var pending: [UInt8] = []
                for try await chunk in response.body {
                    pending += chunk.readableBytesView
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        let bytes = Array(pending[..<newline])
                        pending.removeSubrange(...newline)
                        guard !bytes.isEmpty, let event = try? JSONCodec.parse(bytes) else { continue }
                        let line = Line(event: event, text: String(decoding: bytes, as: UTF8.self))
                        if let id = line.id { last = id }
                        sink.yield(line)
                    }
                }
                // The server ended the stream (it is shutting down): resume elsewhere or after it restarts.
            } catch let error as CLIError where !error.message.hasPrefix("cannot reach") {
                sink.finish(throwing: error)
                return
            } catch {
                if Task.isCancelled { break }
                // The first connection failing is the ordinary "cannot reach" of any command.
                guard connectedOnce else {
                    sink.finish(throwing: error)
                    return
                }
                let since = unreachableSince ?? .now
                unreachableSince = since
                if ContinuousClock.now - since > reconnectFor {
                    sink.finish(throwing: CLIError.unreachable(client.server, "the watch lost its connection: \(APIClient.describe(error))"))
                    return
                }
            }
            try? await Task.sleep(for: backoff)
            backoff = Swift.min(backoff * 2, .seconds(2))
        }
        sink.finish()
    }
}
