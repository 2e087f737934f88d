import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// HTTP/1.1 to agents over keep-alive connections of Cutover's own, for the RPC path. What it does
/// that the general client did not: a request's head and body go out in one write (the agent reads it
/// whole, once), and a call made on an event loop goes out on a connection of that loop, so that the
/// call and its answer stay on one thread. A connection is reused only after a complete answer that did
/// not ask for `Connection: close`; an answer left unfinished closes it; one idle for a minute is closed.
/// The body is read from the agent only as fast as it is consumed.
public final class UpstreamClient: Sendable {
    private let idle = Mutex<[String: [Channel]]>([:])
    let group: MultiThreadedEventLoopGroup

    public init(group: MultiThreadedEventLoopGroup = .singleton) { self.group = group }

    public typealias Body = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, UpstreamHandler.Demand
    >

    public struct Response: Sendable {
        public var status: Int
        public var headers: HTTPHeaders
        /// Read from the agent only as fast as it is consumed; dropping it before its end closes the connection.
        public var body: Body
    }

    /// Closes the idle connections; those in use close when their answers end.
    public func shutdown() {
        let all = idle.withLock { pool in
            defer { pool.removeAll() }
            return pool.values.flatMap { $0 }
        }
        for channel in all { channel.close(promise: nil) }
    }

    /// The agent fell silent for longer than the idle read timeout (before its head, or inside its body).
    public struct ReadTimeout: Error {}

    /// An `http://` URL's parts; nil for any other scheme.
    public struct Target: Sendable {
        var host: String
        var port: Int
        /// What the `Host` header says: the URL's own authority.
        var authority: String
        var path: String

        /// Parsed on every call, so in UTF-8 bytes rather than through Foundation (which showed in the
        /// RPC path's profile at 2 % of Cutover's CPU).
        public init?(url: String) {
            let bytes = url.utf8
            let scheme = "http://".utf8
            // The scheme is case-insensitive.
            let lowered = bytes.prefix(scheme.count).lazy.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
            guard lowered.elementsEqual(scheme) else { return nil }
            let rest = Substring(url).dropFirst(scheme.count)
            let slash = rest.utf8.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex
            let authority = rest[..<slash]
            var hostPart = authority
            var port = 80
            // A port follows the last colon unless that colon is inside an IPv6 literal's brackets.
            if let colon = authority.utf8.lastIndex(of: UInt8(ascii: ":")),
                !authority.utf8[colon...].contains(UInt8(ascii: "]"))
            {
                guard let given = Int(authority[authority.utf8.index(after: colon)...]) else { return nil }
                port = given
                hostPart = authority[..<colon]
            }
            if hostPart.utf8.first == UInt8(ascii: "["), hostPart.utf8.last == UInt8(ascii: "]") {
                hostPart = hostPart.dropFirst().dropLast()
            }
            guard !hostPart.isEmpty else { return nil }
            self.host = String(hostPart)
            self.port = port
            self.authority = String(authority)
            self.path = slash == rest.endIndex ? "/" : String(rest[slash...])
        }
    }

    /// The connection closed before anything of the request was written: safe to send on another.
    struct NotSent: Error {}

    public func execute(
        _ target: Target, headers: [(String, String)], body: ByteBuffer, idleRead: TimeAmount
    ) async throws -> Response {
        do {
            return try await execute(target, headers: headers, body: body, idleRead: idleRead, pooled: true)
        } catch is NotSent where !Task.isCancelled {
            // The pooled connection closed between being taken and being written to.
            return try await execute(target, headers: headers, body: body, idleRead: idleRead, pooled: false)
        }
    }

    private func execute(
        _ target: Target, headers: [(String, String)], body: ByteBuffer, idleRead: TimeAmount, pooled: Bool
    ) async throws -> Response {
        let (host, port, path) = (target.host, target.port, target.path)
        // Called on an event loop (as `serve`'s requests are on PostgreSQL), only an idle connection of that
        // loop, else a new one there: one on another loop costs two thread wake-ups for the call and one
        // for each chunk of the answer, every time, where a new connection costs one handshake, once.
        // Called from elsewhere, any idle connection.
        let current = MultiThreadedEventLoopGroup.currentEventLoop
        let key = "\(host):\(port)"
        var channel: Channel? = !pooled ? nil : idle.withLock { pool in
            guard var list = pool[key] else { return nil }
            list.removeAll { !$0.isActive }
            let index = if let current { list.lastIndex { $0.eventLoop === current } } else { list.indices.last }
            defer { pool[key] = list }
            return index.map { list.remove(at: $0) }
        }
        let loop = current ?? group.next()
        if channel == nil {
            channel = try await ClientBootstrap(group: loop)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.autoRead, value: false)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: .seconds(60)))
                        try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                    }
                }
                .connect(host: host, port: port).get()
        }
        let chosen = channel!
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "host", value: target.authority)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        head.headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
        let request = UpstreamHandler.Request(head: head, body: body, idleRead: idleRead) { [weak self] reusable in
            guard reusable, let self else { return }
            self.idle.withLock { $0[key, default: []].append(chosen) }
        }
        // Cancelled before the head: the connection is closed, which fails the wait (and is never reused).
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                chosen.eventLoop.execute {
                    guard let handler = try? chosen.pipeline.syncOperations.handler(type: UpstreamHandler.self) else {
                        continuation.resume(throwing: NotSent())
                        return
                    }
                    handler.start(request, continuation)
                }
            }
        } onCancel: {
            chosen.close(promise: nil)
        }
    }
}

/// One request at a time on one connection. Unchecked `Sendable`: every use of its state is on the
/// channel's event loop (pipeline callbacks, and `Demand`'s calls hop there first).
public final class UpstreamHandler: ChannelDuplexHandler, @unchecked Sendable {
    public typealias InboundIn = HTTPClientResponsePart
    public typealias OutboundIn = Never
    public typealias OutboundOut = HTTPClientRequestPart

    struct Request {
        var head: HTTPRequestHead
        var body: ByteBuffer
        var idleRead: TimeAmount
        var done: @Sendable (Bool) -> Void
    }

    /// The body's consumer asks for more, or is gone.
    public struct Demand: NIOAsyncSequenceProducerDelegate {
        let handler: NIOLoopBound<UpstreamHandler>
        /// The request whose answer this is: a connection back in the pool may already carry the next.
        let request: Int

        public func produceMore() {
            handler.eventLoop.execute { handler.value.resume(request) }
        }

        public func didTerminate() {
            handler.eventLoop.execute { handler.value.abandoned(request) }
        }
    }

    private var context: ChannelHandlerContext?
    private var request: Request?
    private var headWaiter: CheckedContinuation<UpstreamClient.Response, any Error>?
    private var body: UpstreamClient.Body.Source?
    private var keepAlive = true
    /// Whether to read: always until the head, then while the consumer keeps up.
    private var producing = false
    private var silence: Scheduled<Void>?
    private var requestNumber = 0

    public func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func start(_ request: Request, _ continuation: CheckedContinuation<UpstreamClient.Response, any Error>) {
        guard let context, context.channel.isActive else {
            continuation.resume(throwing: UpstreamClient.NotSent())
            return
        }
        self.request = request
        requestNumber += 1
        headWaiter = continuation
        keepAlive = true
        producing = true
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(request.body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        listen(context)
        context.read()
    }

    /// (Re)starts the idle read timer while reading: each byte of the answer restarts it; its end, or a
    /// consumer that does not keep up (the silence is then ours), stops it.
    private func listen(_ context: ChannelHandlerContext) {
        silence?.cancel()
        silence = nil
        guard producing, let idleRead = request?.idleRead else { return }
        silence = context.eventLoop.assumeIsolated().scheduleTask(in: idleRead) { [self] in
            fail(UpstreamClient.ReadTimeout())
            context.close(promise: nil)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            let produced = NIOThrowingAsyncSequenceProducer.makeSequence(
                elementType: ByteBuffer.self, failureType: (any Error).self,
                backPressureStrategy: NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark(lowWatermark: 2, highWatermark: 16),
                finishOnDeinit: false,
                delegate: Demand(handler: NIOLoopBound(self, eventLoop: context.eventLoop), request: requestNumber))
            body = produced.source
            headWaiter?.resume(returning: .init(status: Int(head.status.code), headers: head.headers, body: produced.sequence))
            headWaiter = nil
        case .body(let buffer):
            if body?.yield(buffer) == .stopProducing { producing = false }
        case .end:
            let finished = body
            body = nil
            let done = request?.done
            request = nil
            producing = false
            // Back in the pool before the caller sees the end, so that its next request finds it there.
            if keepAlive { done?(true) } else { context.close(promise: nil) }
            finished?.finish()
        }
        listen(context)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if producing { context.read() }
    }

    func resume(_ number: Int) {
        guard number == requestNumber, request != nil, !producing, let context else { return }
        producing = true
        listen(context)
        context.read()
    }

    /// The consumer dropped the body before its end: the rest of the answer is never read, so the
    /// connection cannot carry another request.
    func abandoned(_ number: Int) {
        guard number == requestNumber, request != nil else { return }
        fail(CancellationError())
        context?.close(promise: nil)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Idle in the pool for a minute: closed (a request in flight has its own timer).
        if event is IdleStateHandler.IdleStateEvent, request == nil {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error) {
        silence?.cancel()
        silence = nil
        producing = false
        headWaiter?.resume(throwing: error)
        headWaiter = nil
        body?.finish(error)
        body = nil
        request = nil
    }
}
