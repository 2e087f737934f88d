import AsyncHTTPClient
import CutoverCore
import Foundation
import NIOCore
import Testing

/// `GET /agents/{id}/events?watch=true`: the backlog, then each event as it commits, resumable with `after`.
@Suite("Event watch")
struct EventWatchTests {
    @Test(arguments: Backend.all)
    func aWatchSendsTheBacklogThenEachEventAsItCommits(_ backend: Backend) async throws {
        let blue = try await AgentStandIn.start()
        let green = try await AgentStandIn.start()
        defer { Task { await blue.stop(); await green.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("watched", "blue", pod: blue)
            _ = try await h.readyDeployment("watched", "green", pod: green)
            _ = try await eventually("blue auto-promoted") { try await h.agent(named: "watched")?.productionDeploymentId }
            let backlog = try await h.get("/agents/\(agentId)/events?order_direction=asc&limit=1000").array
            let watch = try await WatchStream.open(h, "/agents/\(agentId)/events?watch=true")
            #expect(watch.contentType == "application/x-ndjson")
            let first = try await watch.next(backlog.count)
            #expect(first == backlog, "the backlog, oldest first, exactly as the list shows it")

            #expect(try await h.post("/agents/\(agentId)/deployments/green/promote", ["reason": "watch me"]).status == 200)
            let promoted = try await watch.next(2)
            #expect(promoted.map { $0["type"]?.stringValue } == ["Promoted", "Demoted"])
            #expect(promoted.first?["reason"]?.stringValue == "watch me")

            // A reconnect resumes after the last event seen and misses nothing.
            let lastSeen = try #require(promoted.first?["id"]?.stringValue)
            let resumed = try await WatchStream.open(h, "/agents/\(agentId)/events?watch=true&after=\(lastSeen)")
            #expect(try await resumed.next(1) == [promoted[1]])
            #expect(try await h.delete("/agents/\(agentId)/deployments/blue").status == 200)
            #expect(try await resumed.next(1).first?["type"]?.stringValue == "Deleted")
            #expect(try await watch.next(1).first?["type"]?.stringValue == "Deleted")
            watch.close()
            resumed.close()
        }
    }

    @Test(arguments: Backend.all)
    func badWatchParametersAreRefusedWithTheirField(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("strict", "s1", pod: pod)
            let before = try await h.get("/agents/\(agentId)/events").array
            let unknown = try await h.get("/agents/\(agentId)/events?watch=true&after=no-such-event")
            #expect(unknown.status == 422)
            #expect(unknown.errorFields == ["after"])
            #expect(unknown.message.contains("after"))
            let nul = try await h.get("/agents/\(agentId)/events?watch=true&after=%00")
            #expect(nul.status == 422)
            #expect(nul.errorFields == ["after"])
            let notABool = try await h.get("/agents/\(agentId)/events?watch=maybe")
            #expect(notABool.status == 422)
            #expect(notABool.errorFields == ["watch"])
            // Another agent's event is no position in this agent's trail.
            let (otherId, _) = try await h.readyDeployment("other", "o1", pod: pod)
            let foreign = try #require(try await h.get("/agents/\(otherId)/events").array.first?["id"]?.stringValue)
            #expect(try await h.get("/agents/\(agentId)/events?watch=true&after=\(foreign)").status == 422)
            #expect(try await h.get("/agents/no-such-agent/events?watch=true").status == 404)
            #expect(try await h.get("/agents/\(agentId)/events").array == before, "reading changes nothing")
        }
    }

    @Test(arguments: Backend.postgresOnly)
    func aWatchOnOneReplicaHearsCommitsThroughAnother(_ backend: Backend) async throws {
        let blue = try await AgentStandIn.start()
        let green = try await AgentStandIn.start()
        defer { Task { await blue.stop(); await green.stop() } }
        try await Backend.withFreshPostgresDatabase { database in
            try await Harness.with(backend, .init(store: try await Backend.openPostgres(database))) { a in
                try await Harness.with(backend, .init(runController: false, store: try await Backend.openPostgres(database))) { b in
                    let (agentId, _) = try await a.readyDeployment("spread", "blue", pod: blue)
                    _ = try await a.readyDeployment("spread", "green", pod: green)
                    _ = try await eventually("blue auto-promoted") { try await a.agent(named: "spread")?.productionDeploymentId }
                    let count = try await a.get("/agents/\(agentId)/events?limit=1000").array.count
                    let watch = try await WatchStream.open(b, "/agents/\(agentId)/events?watch=true")
                    _ = try await watch.next(count)
                    #expect(try await a.post("/agents/\(agentId)/deployments/green/promote").status == 200)
                    let start = ContinuousClock.now
                    let heard = try await watch.next(2)
                    #expect(heard.map { $0["type"]?.stringValue } == ["Promoted", "Demoted"])
                    #expect(ContinuousClock.now - start < .seconds(1), "heard within a second of the commit")
                    watch.close()
                }
            }
        }
    }

    @Test(arguments: Backend.all)
    func shutdownEndsAnOpenWatch(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        let h = try await Harness.start(backend)
        let (agentId, _) = try await h.readyDeployment("ending", "e1", pod: pod)
        let watch = try await WatchStream.open(h, "/agents/\(agentId)/events?watch=true")
        _ = try await watch.next(1)
        let start = ContinuousClock.now
        let stopping = Task { await h.stop() }
        #expect(try await watch.ended(within: .seconds(5)), "the stream ends cleanly")
        try await boundedWait(.seconds(5)) { await stopping.value }
        #expect(ContinuousClock.now - start < .seconds(5), "an open watch does not hold shutdown for its grace period")
    }
}

/// An NDJSON response read line by line as it arrives.
final class WatchStream: Sendable {
    let contentType: String?
    private let lines: AsyncThrowingStream<String, any Error>
    private let reader: Task<Void, Never>
    private let iterator: IteratorBox

    private final class IteratorBox: @unchecked Sendable {
        var iterator: AsyncThrowingStream<String, any Error>.Iterator
        init(_ iterator: AsyncThrowingStream<String, any Error>.Iterator) { self.iterator = iterator }
    }

    private init(contentType: String?, lines: AsyncThrowingStream<String, any Error>, reader: Task<Void, Never>) {
        self.contentType = contentType
        self.lines = lines
        self.reader = reader
        self.iterator = IteratorBox(lines.makeAsyncIterator())
    }

    static func open(_ h: Harness, _ path: String) async throws -> WatchStream {
        var request = HTTPClientRequest(url: h.baseURL + path)
        if let token = h.adminToken { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        let response = try await Harness.http.execute(request, deadline: .now() + .seconds(60))
        guard response.status == .ok else { throw TestFailure("watch answered \(response.status)") }
        let (lines, sink) = AsyncThrowingStream<String, any Error>.makeStream()
        let reader = Task {
            var pending = ""
            do {
                for try await buffer in response.body {
                    pending += String(buffer: buffer)
                    while let newline = pending.firstIndex(of: "\n") {
                        let line = String(pending[..<newline])
                        pending = String(pending[pending.index(after: newline)...])
                        if !line.isEmpty { sink.yield(line) }
                    }
                }
                sink.finish()
            } catch {
                sink.finish(throwing: error)
            }
        }
        return WatchStream(contentType: response.headers.first(name: "content-type"), lines: lines, reader: reader)
    }

    /// The next `count` events, within `limit`.
    func next(_ count: Int, within limit: Duration = .seconds(5)) async throws -> [JSONValue] {
        try await boundedWait(limit) {
            var out: [JSONValue] = []
            while out.count < count {
                guard let line = try await self.iterator.iterator.next() else {
                    throw TestFailure("the watch ended after \(out.count) of \(count) events")
                }
                out.append(try JSONCodec.parse(line))
            }
            return out
        }
    }

    /// Whether the stream ends without error within `limit`.
    func ended(within limit: Duration) async throws -> Bool {
        try await boundedWait(limit) {
            while try await self.iterator.iterator.next() != nil {}
            return true
        }
    }

    func close() { reader.cancel() }
}

private func boundedWait<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TestFailure("timed out after \(limit)")
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}
