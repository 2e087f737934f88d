import CutoverCore
import CutoverStore
import Hummingbird
import NIOCore
import ServiceLifecycle

/// `GET /agents/{id}/events?watch=true[&after=EVENT_ID]`: the agent's events as NDJSON, one per line in
/// commit order; first those after `after` (all of them without it), then each one as it commits on any
/// replica. It follows the change feed (which carries the other replicas' commits on PostgreSQL) and
/// re-reads from its last position on every change of the agent, so a lost or merged notification
/// delays nothing past the next one; the keep-alive tick re-reads too, bounding what a dropped listener
/// can hide. A blank line every `keepAlive` tells idle clients and proxies the stream is alive.
/// Graceful shutdown ends the stream cleanly: the client resumes on another replica with `after`.
struct EventWatch: Sendable {
    let store: any Store
    let agentId: String
    var keepAlive: Duration = .seconds(15)
    /// Events read per query; a longer backlog is sent in several.
    static let batch = 500

    private enum Signal { case changed, tick }

    func response(after: String?) async throws -> Response {
        var start: Int64 = 0
        if let after {
            // No event id holds a NUL, and PostgreSQL refuses one in a query.
            guard Rules.nulProblem(after) == nil,
                let position = try await store.read({ try await $0.eventPosition(agentId: agentId, id: after) })
            else {
                throw CutoverError.invalid("after", "names no event of this agent")
            }
            start = position
        }
        // Subscribed before the first read, so a commit between that read and the loop is still heard.
        let changes = store.changes.subscribe()
        let watch = self, first = start
        let body = ResponseBody { writer in
            try await watch.stream(from: first, changes: changes, to: &writer)
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: body)
    }

    private func stream(
        from start: Int64, changes: AsyncStream<Change>, to writer: inout any ResponseBodyWriter
    ) async throws {
        let (signals, signal) = AsyncStream<Signal>.makeStream(bufferingPolicy: .bufferingNewest(8))
        let agentId = self.agentId
        let keepAlive = self.keepAlive
        let producers = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await change in changes where change.agentId == agentId { signal.yield(.changed) }
                    signal.finish()
                }
                group.addTask {
                    while (try? await Task.sleep(for: keepAlive)) != nil { signal.yield(.tick) }
                }
                await group.next()
                group.cancelAll()
            }
        }
        defer { producers.cancel() }
        try await withGracefulShutdownHandler {
            var position = start
            var wroteSinceTick = try await send(after: &position, to: &writer)
            for await next in signals {
                if try await send(after: &position, to: &writer) {
                    wroteSinceTick = true
                } else if next == .tick {
                    if !wroteSinceTick { try await writer.write(ByteBuffer(string: "\n")) }
                    wroteSinceTick = false
                }
            }
        } onGracefulShutdown: {
            signal.finish()
        }
    }

    /// Writes every event after `position` and moves it past them; whether there were any.
    private func send(after position: inout Int64, to writer: inout any ResponseBodyWriter) async throws -> Bool {
        var wrote = false
        while true {
            let from = position
            let page = try await store.read { try await $0.events(agentId: agentId, after: from, limit: Self.batch) }
            guard let last = page.last else { return wrote }
            var lines: [UInt8] = []
            for (_, event) in page {
                event.write(into: &lines)
                lines.append(UInt8(ascii: "\n"))
            }
            try await writer.write(ByteBuffer(bytes: lines))
            position = last.position
            wrote = true
            if page.count < Self.batch { return wrote }
        }
    }
}
