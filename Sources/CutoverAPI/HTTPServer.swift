import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

extension CutoverAPI {
    /// The HTTP/1.1 server of `cutover serve` and of the tests: Hummingbird's, plus the connection rule
    /// Hummingbird leaves out (an HTTP/1.0 request without keep-alive closes its connection), and idle
    /// connections closed after 75 s so clients that hold sockets open cannot pile them up (longer than
    /// the usual 60 s client keep-alive, so a client rarely sends on a connection being closed).
    public static let httpServer = HTTPServerBuilder { responder in
        CloseAwareHTTP1Channel(
            inner: HTTP1Channel(responder: responder, configuration: .init(idleTimeout: .seconds(75))))
    }
}

/// Hummingbird's HTTP/1 channel with `ConnectionCloseNormalizer` in the pipeline right after the HTTP
/// decoder, where the request's HTTP version is still known.
struct CloseAwareHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.addHandler(ConnectionCloseNormalizer(), position: .after(decoder))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Hummingbird closes a connection after a response only when the request said exactly
/// `Connection: close`. This rewrites every request that is not keep-alive by HTTP's rules (HTTP/1.0
/// without `keep-alive`, or a `Connection` header listing `close` among other tokens) to say exactly that.
final class ConnectionCloseNormalizer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data), !head.isKeepAlive,
            head.headers[canonicalForm: "connection"] != ["close"]
        else {
            context.fireChannelRead(data)
            return
        }
        head.headers.replaceOrAdd(name: "connection", value: "close")
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}
