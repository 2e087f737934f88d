import AsyncHTTPClient
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The general outbound HTTP client (readiness probes, and RPCs to `https` agents; `UpstreamClient` carries
/// those to `http` ones) and how outbound failures read, for both.
public enum Outbound {
    /// Pooled keep-alive connections, no redirects, no decompression. A refused connection fails the
    /// request at once instead of being retried until the connect timeout, and `idleRead` bounds every
    /// silence of an agent once the request is sent: the wait for the head and each gap inside the body.
    public static func makeClient(idleRead: Duration, maxConnectionsPerHost: Int = 512) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: maxConnectionsPerHost)
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.read = .nanoseconds(Int64(idleRead.microseconds) * 1_000)
        configuration.timeout.connect = .seconds(5)
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Whether `error` is an outbound timeout, of either client: no connection in time, or an agent
    /// silent past the idle read timeout (before its answer's head or inside its body).
    public static func isTimeout(_ error: any Error) -> Bool {
        if error is UpstreamClient.ReadTimeout { return true }
        if let error = error as? HTTPClientError {
            return error == .readTimeout || error == .deadlineExceeded || error == .connectTimeout
        }
        if case ChannelError.connectTimeout? = error as? ChannelError { return true }
        return false
    }

    /// Whether `error` is the agent's port refusing the connection.
    public static func isConnectionRefused(_ error: any Error) -> Bool {
        if let error = error as? IOError { return error.errnoCode == ECONNREFUSED }
        if let error = error as? NIOConnectionError {
            return !error.connectionErrors.isEmpty
                && error.connectionErrors.allSatisfy { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }
        }
        return "\(error)".contains("Connection refused")
    }

    /// A sentence a person can act on, for an outbound request to `url` that failed with `error`.
    public static func describe(_ error: any Error, url: String) -> String {
        let target = hostAndPort(url)
        if isConnectionRefused(error) { return "connection refused by \(target) (nothing listens there)" }
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "could not connect to \(target) in time"
            case .remoteConnectionClosed: return "\(target) closed the connection before answering"
            case .readTimeout, .deadlineExceeded: return "\(target) did not answer in time"
            default: break
            }
        }
        if let error = error as? NIOConnectionError {
            if error.dnsAError != nil || error.dnsAAAAError != nil { return "cannot resolve the host of \(target)" }
            if let first = error.connectionErrors.first { return "cannot connect to \(target): \(first.error)" }
        }
        return "request to \(target) failed: \(error)"
    }

    static func hostAndPort(_ url: String) -> String {
        var rest = Substring(url)
        if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
        return String(rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" })
    }
}

/// Runs `operation`, cancelling it if it has not finished within `limit`; nil on timeout.
public func withDeadline<T: Sendable>(
    _ limit: Duration, _ operation: @escaping @Sendable () async -> T
) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask { await operation() }
        group.addTask {
            try? await Task.sleep(for: limit)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
