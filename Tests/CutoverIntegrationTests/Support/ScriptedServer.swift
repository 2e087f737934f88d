import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A loopback HTTP/1.1 server on blocking sockets that answers each request with scripted bytes and
/// records what the client did: connections opened, the bytes of each request's first read, closes.
final class ScriptedServer: Sendable {
    enum Step: Sendable {
        case send(String)
        /// `count` chunks of `size` bytes as fast as the client takes them.
        case sendChunks(count: Int, size: Int)
        /// Waits until the test releases the server (at most 5 s).
        case waitForRelease
        case close
    }

    struct Seen: Sendable {
        var connections = 0
        /// Per request, in order: whether its first read held the whole request.
        var wholeInFirstRead: [Bool] = []
        var closedByClient = 0
        /// Bytes the client has taken of `sendChunks`.
        var chunkBytesSent = 0
    }

    let port: Int
    private let fd: Int32
    private let seen = Mutex(Seen())
    private let script: @Sendable (_ connection: Int, _ request: Int) -> [Step]
    private let release = DispatchSemaphore(value: 0)

    init(script: @escaping @Sendable (_ connection: Int, _ request: Int) -> [Step]) throws {
        let socket = try ServerSocketPort()
        guard listen(socket.fd, 16) == 0 else { throw TestFailure("cannot listen on loopback") }
        fd = socket.fd
        port = socket.port
        self.script = script
        Thread { [self] in acceptLoop() }.start()
    }

    var recorded: Seen { seen.withLock { $0 } }
    func releaseOnce() { release.signal() }
    func stop() { shutdown(fd, Int32(SHUT_RDWR)); _ = Glibc.close(fd) }

    private func acceptLoop() {
        while true {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return }
            let index = seen.withLock { s in
                s.connections += 1
                return s.connections - 1
            }
            Thread { [self] in serve(client, connection: index) }.start()
        }
    }

    private func serve(_ client: Int32, connection: Int) {
        defer { _ = Glibc.close(client) }
        var pending: [UInt8] = []
        var request = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            // One request: its head, then Content-Length bytes, counting the reads it took.
            var reads = 0
            while true {
                if let end = Self.headEnd(pending), pending.count >= end + Self.contentLength(pending[..<end]) {
                    pending.removeFirst(end + Self.contentLength(pending[..<end]))
                    break
                }
                let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                if n <= 0 {
                    if n == 0 && pending.isEmpty { seen.withLock { $0.closedByClient += 1 } }
                    return
                }
                reads += 1
                pending += buffer[0..<n]
            }
            let wholeInFirst = reads <= 1
            seen.withLock { $0.wholeInFirstRead.append(wholeInFirst) }
            for step in script(connection, request) {
                switch step {
                case .send(let text):
                    let bytes = Array(text.utf8)
                    _ = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                case .sendChunks(let count, let size):
                    let chunk = Array("\(String(size, radix: 16))\r\n".utf8) + [UInt8](repeating: 120, count: size) + [13, 10]
                    for _ in 0..<count {
                        let sent = chunk.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        guard sent == chunk.count else { return }
                        seen.withLock { $0.chunkBytesSent += size }
                    }
                case .waitForRelease:
                    _ = release.wait(timeout: .now() + 5)
                case .close:
                    return
                }
            }
            request += 1
        }
    }

    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i + 4
        }
        return nil
    }

    private static func contentLength(_ head: ArraySlice<UInt8>) -> Int {
        let text = String(decoding: head, as: UTF8.self).lowercased()
        guard let line = text.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }) else { return 0 }
        return Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
    }
}
