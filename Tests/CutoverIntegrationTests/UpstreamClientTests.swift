@testable import CutoverRouting
@testable import CutoverStore
import NIOCore
import NIOPosix
import Testing

/// HTTP/1.1 of the client that forwards RPCs to agents, against a server that answers with scripted bytes.
@Suite("Upstream client")
struct UpstreamClientTests {
    let client = UpstreamClient()

    func call(
        _ server: ScriptedServer, _ text: String = "{}", idleRead: TimeAmount = .seconds(5)
    ) async throws -> UpstreamClient.Response {
        try await client.execute(
            try #require(UpstreamClient.Target(url: "http://127.0.0.1:\(server.port)/api")),
            headers: [("content-type", "application/json")], body: ByteBuffer(string: text), idleRead: idleRead)
    }

    func read(_ response: UpstreamClient.Response) async throws -> String {
        var text = ""
        for try await part in response.body { text += String(buffer: part) }
        return text
    }

    static let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    @Test
    func onlyAnHTTPURLWithAHostIsATarget() {
        func parts(_ url: String) -> [String]? {
            UpstreamClient.Target(url: url).map { [$0.host, String($0.port), $0.authority, $0.path] }
        }
        #expect(parts("http://127.0.0.1:8000/api") == ["127.0.0.1", "8000", "127.0.0.1:8000", "/api"])
        #expect(parts("HTTP://Agent.local/a/api?x=1") == ["Agent.local", "80", "Agent.local", "/a/api?x=1"])
        #expect(parts("http://agent") == ["agent", "80", "agent", "/"])
        #expect(parts("http://[::1]:9/api") == ["::1", "9", "[::1]:9", "/api"])
        #expect(parts("http://[::1]/api") == ["::1", "80", "[::1]", "/api"])
        for url in ["https://agent/api", "ftp://agent", "http:/agent", "http://", "http://:80/api", "http://agent:x/api", "htt"] {
            #expect(parts(url) == nil, "\(url)")
        }
    }

    @Test
    func streamedContentTypesAreRecognisedWhateverTheirCase() {
        for type in ["application/x-ndjson", "text/event-stream; charset=utf-8", "Application/Octet-Stream", "APPLICATION/X-NDJSON", "é/stream"] {
            #expect(RPCProxy.isStreaming(type), "\(type)")
        }
        for type in ["application/json", "text/plain", "", "strea", "x-ndjso", "stre am", nil] {
            #expect(!RPCProxy.isStreaming(type), "\(type ?? "nil")")
        }
    }

    @Test
    func aConnectionIsReusedAfterACompleteAnswerAndEachRequestIsOneWrite() async throws {
        let server = try ScriptedServer { _, _ in [.send(Self.ok)] }
        defer { server.stop() }
        for _ in 0..<3 {
            let response = try await call(server, String(repeating: "x", count: 800))
            #expect(response.status == 200)
            #expect(try await read(response) == "ok")
        }
        #expect(server.recorded.connections == 1, "one keep-alive connection")
        #expect(server.recorded.wholeInFirstRead == [true, true, true], "head and body in one flush")
    }

    /// `serve` runs its requests on the event loops (on PostgreSQL). A call made on one goes out on a
    /// connection of that loop, a new one when none of that loop's is idle, so that the answer resumes the
    /// call on the thread it runs on; a call from elsewhere takes any idle connection.
    @Test
    func aCallOnAnEventLoopGoesOutOnAConnectionOfThatLoop() async throws {
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        try #require(loops.count >= 2, "needs two event loops")
        let server = try ScriptedServer { _, _ in [.send(Self.ok)] }
        defer { server.stop() }
        func call(on loop: (any EventLoop)?) async throws {
            let response = if let loop {
                try await withTaskExecutorPreference(EventLoopTaskExecutor(loop)) { try await self.call(server) }
            } else {
                try await self.call(server)
            }
            #expect(try await read(response) == "ok")
        }
        try await call(on: loops[0])
        try await call(on: loops[1])
        #expect(server.recorded.connections == 2, "the second loop opened its own rather than take the first's")
        try await call(on: loops[0])
        try await call(on: loops[1])
        #expect(server.recorded.connections == 2, "each loop reuses its own")
        try await call(on: nil)
        #expect(server.recorded.connections == 2, "off the loops, any idle connection")
    }

    @Test
    func aChunkedAnswerArrivesChunkByChunkAndThenTheConnectionIsReused() async throws {
        let server = try ScriptedServer { _, request in
            request == 0
                ? [.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\na\n\r\n"), .waitForRelease,
                   .send("2\r\nb\n\r\n0\r\n\r\n")]
                : [.send(Self.ok)]
        }
        defer { server.stop() }
        let response = try await call(server)
        let iterator = response.body.makeAsyncIterator()
        let first = try await iterator.next()
        #expect(first.map { String(buffer: $0) } == "a\n", "the first chunk before the server goes on")
        server.releaseOnce()
        var rest = ""
        while let part = try await iterator.next() { rest += String(buffer: part) }
        #expect(rest == "b\n")
        #expect(try await read(try await call(server)) == "ok")
        #expect(server.recorded.connections == 1)
    }

    @Test
    func anAnswerWithConnectionCloseIsNotReused() async throws {
        let server = try ScriptedServer { _, _ in [.send("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"), .close] }
        defer { server.stop() }
        #expect(try await read(try await call(server)) == "ok")
        #expect(try await read(try await call(server)) == "ok")
        #expect(server.recorded.connections == 2)
    }

    /// Agents close idle keep-alive connections (uvicorn after 5 s): the next call must not be sent on one.
    @Test
    func aConnectionTheAgentClosedWhileIdleIsNotUsedAgain() async throws {
        let server = try ScriptedServer { _, _ in [.send(Self.ok), .close] }
        defer { server.stop() }
        #expect(try await read(try await call(server)) == "ok")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await read(try await call(server)) == "ok")
        #expect(server.recorded.connections == 2)
    }

    @Test
    func anAnswerLeftUnfinishedClosesItsConnection() async throws {
        let server = try ScriptedServer { connection, _ in
            connection == 0
                ? [.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\na\n\r\n"), .waitForRelease]
                : [.send(Self.ok)]
        }
        defer { server.stop() }
        let (firstChunk, readIt) = AsyncStream<Void>.makeStream()
        let reader = Task {
            defer { readIt.finish() }
            let response = try await call(server)
            let iterator = response.body.makeAsyncIterator()
            _ = try await iterator.next()
            readIt.yield()
            try await Task.sleep(for: .seconds(30))
        }
        // Cancelled once the first chunk is read, so that the case is the one named. Cancelled at a fixed
        // 100 ms, it failed in one run of the whole suite in five, the server seeing no clean close: most
        // likely the reader had not read the answer yet, and a socket closed with bytes unread is reset,
        // which the server does not count as a close.
        var chunks = firstChunk.makeAsyncIterator()
        try #require(await chunks.next() != nil, "the first chunk")
        #expect(server.recorded.connections == 1)
        reader.cancel()
        server.releaseOnce()
        _ = try await eventually("the unfinished connection closed") { server.recorded.closedByClient == 1 ? true : nil }
        #expect(try await read(try await call(server)) == "ok")
        #expect(server.recorded.connections == 2, "never reused after an incomplete answer")
    }

    /// An agent faster than the client: the answer is read only as fast as it is consumed, so the agent
    /// waits (its socket full) instead of Cutover holding the answer in memory.
    @Test
    func aFastAgentWaitsForASlowConsumer() async throws {
        let server = try ScriptedServer { _, _ in
            [.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .sendChunks(count: 1024, size: 64 * 1024), .send("0\r\n\r\n")]
        }
        defer { server.stop() }
        let response = try await call(server)
        let iterator = response.body.makeAsyncIterator()
        var read = try await iterator.next()?.readableBytes ?? 0
        // 64 MiB would be sent in well under a second if nothing held the agent back.
        try await Task.sleep(for: .milliseconds(700))
        let taken = server.recorded.chunkBytesSent
        #expect(taken < 24 * 1024 * 1024, "the agent waited: \(taken) bytes taken")
        while let part = try await iterator.next() { read += part.readableBytes }
        #expect(read == 1024 * 64 * 1024, "and the whole answer came through")
    }

    @Test
    func aSilentAgentFailsWithTheReadTimeout() async throws {
        let server = try ScriptedServer { _, _ in [.waitForRelease] }
        defer { server.stop(); server.releaseOnce() }
        await #expect(throws: UpstreamClient.ReadTimeout.self) {
            _ = try await call(server, idleRead: .milliseconds(200))
        }
    }
}
