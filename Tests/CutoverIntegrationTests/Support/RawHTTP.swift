import CutoverCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP client for what an HTTP client library will not send: broken framing, HTTP/1.0, raw
/// header bytes. Blocking socket calls with receive timeouts, each exchange on a thread of its own.
struct RawHTTP {
    struct Answer {
        var status: Int
        var head: String
        var body: String
        /// Whether the server closed the connection after its answer (within the read timeout).
        var closed: Bool
        var json: JSONValue { (try? JSONCodec.parse(Array(body.utf8))) ?? .null }
    }

    /// Sends `bytes` to 127.0.0.1:`port` and reads until the server closes the connection or `timeout`
    /// passes without a byte.
    static func exchange(port: Int, _ bytes: [UInt8], timeout: Duration = .seconds(5)) async throws -> Answer {
        try await onThreadOfItsOwn { try blockingExchange(port: port, bytes, timeout: timeout) }
    }

    static func exchange(port: Int, _ text: String, timeout: Duration = .seconds(5)) async throws -> Answer {
        try await exchange(port: port, Array(text.utf8), timeout: timeout)
    }

    /// Sends `text`, several requests back to back (pipelined), and reads as `exchange` does: the answers
    /// in the order they came, each framed by its Content-Length or chunked encoding (a body with neither
    /// runs to the end); the last says whether the server then closed the connection.
    static func pipeline(port: Int, _ text: String, timeout: Duration = .seconds(5)) async throws -> [Answer] {
        try await onThreadOfItsOwn {
            let (received, closed) = try blockingRead(port: port, Array(text.utf8), timeout: timeout)
            return answers(in: received[...], closed: closed)
        }
    }

    /// Not on `DispatchQueue.global()`: on Linux, Swift's own jobs run on that queue's threads, which
    /// libdispatch adds about one a second once they block. Two exchanges waiting out their read timeouts
    /// held every test's async code back for a second, eight for their whole wait, and the tests' ten
    /// second waits (a controller's reconcile, a cancelled read's close) then timed out in CI.
    private static func onThreadOfItsOwn<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// The first answer, framed as `pipeline` frames each, and whether the server then closed the connection.
    private static func blockingExchange(port: Int, _ bytes: [UInt8], timeout: Duration) throws -> Answer {
        let (received, closed) = try blockingRead(port: port, bytes, timeout: timeout)
        var first = answers(in: received[...], closed: false).first ?? Answer(status: 0, head: "", body: "", closed: false)
        first.closed = closed
        return first
    }

    /// Every byte the server sent until it closed the connection (true) or fell silent for `timeout`.
    private static func blockingRead(port: Int, _ bytes: [UInt8], timeout: Duration) throws -> ([UInt8], Bool) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect to port \(port) failed") }
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var received: [UInt8] = []
        var closed = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 {
                closed = true
                break
            }
            if n < 0 { break }  // timed out (or reset): the connection stayed open as far as we can tell
            received += buffer[0..<n]
        }
        return (received, closed)
    }

    /// The answers in `bytes`, one after the other; `closed` is given to the last.
    private static func answers(in bytes: ArraySlice<UInt8>, closed: Bool) -> [Answer] {
        var rest = bytes
        var out: [Answer] = []
        func line() -> ArraySlice<UInt8>? {
            guard let end = rest.indices.first(where: { rest[$0] == 13 && $0 + 1 < rest.endIndex && rest[$0 + 1] == 10 }) else {
                return nil
            }
            defer { rest = rest[(end + 2)...] }
            return rest[..<end]
        }
        while !rest.isEmpty, let statusLine = line() {
            var headLines = [String(decoding: statusLine, as: UTF8.self)]
            var length: Int?
            var chunked = false
            while let header = line(), !header.isEmpty {
                let text = String(decoding: header, as: UTF8.self)
                headLines.append(text)
                let lower = text.lowercased()
                if lower.hasPrefix("content-length:") { length = Int(lower.dropFirst(15).trimmingCharacters(in: .whitespaces)) }
                if lower.hasPrefix("transfer-encoding:"), lower.contains("chunked") { chunked = true }
            }
            var body: [UInt8] = []
            if chunked {
                while let sizeLine = line(), let size = Int(String(decoding: sizeLine, as: UTF8.self), radix: 16) {
                    if size == 0 {
                        while let trailer = line(), !trailer.isEmpty {}
                        break
                    }
                    body += rest.prefix(size)
                    rest = rest.dropFirst(size + 2)
                }
            } else if let length {
                body = Array(rest.prefix(length))
                rest = rest.dropFirst(length)
            } else {
                body = Array(rest)
                rest = []
            }
            let status = headLines[0].split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            out.append(Answer(
                status: status, head: headLines.joined(separator: "\r\n"), body: String(decoding: body, as: UTF8.self), closed: false))
        }
        if closed, !out.isEmpty { out[out.count - 1].closed = true }
        return out
    }
}
