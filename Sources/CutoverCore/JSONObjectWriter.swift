#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a JSON object straight to bytes, members in the order given: records become responses without
/// an intermediate `JSONValue` dictionary or a sort of its keys (together 11 % of a list request's CPU in
/// profiles). Callers give keys in ascending byte order, so the bytes equal `JSONCodec.serialize` of the
/// same object; debug builds check it.
public struct JSONObjectWriter {
    public private(set) var bytes: [UInt8]
    private var members = 0
    #if DEBUG
    private var lastKey: [UInt8] = []
    #endif

    /// Appends an object to `out`: `body` writes its members.
    public static func write(into out: inout [UInt8], _ body: (inout JSONObjectWriter) -> Void) {
        var writer = JSONObjectWriter(bytes: [])
        swap(&writer.bytes, &out)
        writer.bytes.append(UInt8(ascii: "{"))
        body(&writer)
        writer.bytes.append(UInt8(ascii: "}"))
        swap(&writer.bytes, &out)
    }

    /// One object on its own.
    public static func object(_ body: (inout JSONObjectWriter) -> Void) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        write(into: &out, body)
        return out
    }

    /// `[` items `]`, each written by `item`.
    public static func array<S: Sequence>(_ items: S, _ item: (S.Element, inout [UInt8]) -> Void) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        out.reserveCapacity(1024)
        for (i, element) in items.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            item(element, &out)
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    /// Keys are the API's own snake_case names: nothing in them needs escaping.
    private mutating func key(_ key: StaticString) {
        #if DEBUG
        let utf8 = Array(UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        assert(members == 0 || lastKey.lexicographicallyPrecedes(utf8), "JSON keys out of order at \(key)")
        lastKey = utf8
        #endif
        if members > 0 { bytes.append(UInt8(ascii: ",")) }
        members += 1
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        key(name)
        JSONCodec.writeString(value, into: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: String?) {
        key(name)
        if let value { JSONCodec.writeString(value, into: &bytes) } else { bytes.append(contentsOf: "null".utf8) }
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func field(_ name: StaticString, _ value: Int64) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func field(_ name: StaticString, _ value: Timestamp) {
        key(name)
        value.writeRFC3339(into: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: Timestamp?) {
        key(name)
        if let value { value.writeRFC3339(into: &bytes) } else { bytes.append(contentsOf: "null".utf8) }
    }

    public mutating func field(_ name: StaticString, _ value: JSONValue) {
        key(name)
        JSONCodec.write(value, into: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: [String: JSONValue]?) {
        key(name)
        if let value { JSONCodec.write(.object(value), into: &bytes) } else { bytes.append(contentsOf: "null".utf8) }
    }

    /// A member whose value `body` writes (a nested object or array).
    public mutating func field(_ name: StaticString, raw body: (inout [UInt8]) -> Void) {
        key(name)
        body(&bytes)
    }
}

extension Timestamp {
    /// Appends `"` RFC 3339 `"`, the same text as `rfc3339`, without building strings on the way.
    public func writeRFC3339(into out: inout [UInt8]) {
        let seconds = microseconds.floorDivided(by: 1_000_000)
        var time = time_t(seconds)
        let micros = Int(microseconds - seconds * 1_000_000)
        var parts = tm()
        gmtime_r(&time, &parts)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            if v < 0 || v >= divisor * 10 {
                // A year outside 0...9999: as it is.
                out.append(contentsOf: String(v).utf8)
                return
            }
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(v / divisor))
                v %= divisor
                divisor /= 10
            }
        }
        out.append(UInt8(ascii: "\""))
        digits(Int(parts.tm_year) + 1900, 4)
        out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2)
        out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2)
        out.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2)
        out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2)
        out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2)
        out.append(UInt8(ascii: "."))
        digits(micros, 6)
        out.append(contentsOf: [UInt8(ascii: "Z"), UInt8(ascii: "\"")])
    }
}
