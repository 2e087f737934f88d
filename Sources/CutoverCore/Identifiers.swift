#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Server-generated identifiers and secrets.
public enum Identifiers {
    /// A random (version 4) UUID in its lowercase text form. Built from two 64-bit draws straight into
    /// one string: it is on the RPC hot path (`x-request-id`, and the ids of what each call writes).
    public static func uuid() -> String {
        let (first, second) = randomWords.withLock { $0.take() }
        let high = first & 0xFFFF_FFFF_FFFF_0FFF | 0x0000_0000_0000_4000
        let low = second & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var i = 0
            func put(_ value: UInt64, nibbles: Int) {
                for shift in stride(from: (nibbles - 1) * 4, through: 0, by: -4) {
                    buffer[i] = hexDigits[Int((value >> UInt64(shift)) & 0xF)]
                    i += 1
                }
            }
            func dash() {
                buffer[i] = UInt8(ascii: "-")
                i += 1
            }
            put(high >> 32, nibbles: 8)
            dash()
            put(high >> 16, nibbles: 4)
            dash()
            put(high, nibbles: 4)
            dash()
            put(low >> 48, nibbles: 4)
            dash()
            put(low, nibbles: 12)
            return i
        }
    }

    /// 256 random bits from the system's CSPRNG, hex-encoded.
    public static func apiKey() -> String {
        var g = SystemRandomNumberGenerator()
        return String(unsafeUninitializedCapacity: 64) { buffer in
            for word in 0..<4 {
                let value: UInt64 = g.next()
                for n in 0..<16 { buffer[word * 16 + n] = hexDigits[Int((value >> UInt64(60 - n * 4)) & 0xF)] }
            }
            return 64
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// UUIDs' random bits, drawn from the system's CSPRNG 256 bytes at a time: the standard library's
    /// generator makes a `getrandom` call for every 8 bytes, two per UUID and six per `event/send`.
    private static let randomWords = Mutex(RandomWords())

    private struct RandomWords: ~Copyable {
        private var words = [UInt64](repeating: 0, count: 32)
        private var next = 32

        mutating func take() -> (UInt64, UInt64) {
            if next + 2 > words.count {
                words.withUnsafeMutableBytes { Self.fill($0) }
                next = 0
            }
            defer { next += 2 }
            return (words[next], words[next + 1])
        }

        private static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
            // `getentropy` gives up to 256 bytes from the same source as the standard library's generator.
            guard getentropy(buffer.baseAddress!, buffer.count) == 0 else {
                fatalError("getentropy failed: errno \(errno)")
            }
        }
    }

    /// The leading part of an API key used to find its agent; the whole key is then compared in constant time.
    public static func apiKeyLookup(_ key: String) -> String { String(key.prefix(16)) }

}
