#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A point in time with microsecond precision, stored as microseconds since the Unix epoch so that
/// both database dialects compare and order it as a plain integer.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var microseconds: Int64

    public init(microseconds: Int64) { self.microseconds = microseconds }

    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(microseconds: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000)
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.microseconds < b.microseconds }

    public static func + (t: Timestamp, d: Duration) -> Timestamp {
        Timestamp(microseconds: t.microseconds + d.microseconds)
    }

    public static func - (a: Timestamp, b: Timestamp) -> Duration {
        .microseconds(a.microseconds - b.microseconds)
    }

    /// RFC 3339 in UTC with six fractional digits, e.g. `2026-11-28T23:24:14.643562Z`.
    public var rfc3339: String {
        var quoted: [UInt8] = []
        quoted.reserveCapacity(29)
        writeRFC3339(into: &quoted)
        return String(decoding: quoted.dropFirst().dropLast(), as: UTF8.self)
    }

    public var description: String { rfc3339 }
}

extension Int64 {
    func floorDivided(by d: Int64) -> Int64 {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}

extension Duration {
    public var microseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000 + atto / 1_000_000_000_000
    }

    public var seconds: Double { Double(microseconds) / 1_000_000 }

    /// Parses the durations of the configuration: `250ms`, `30s`, `10m`, `24h` (and combinations like `1h30m`).
    public static func parse(_ text: String) -> Duration? {
        var total: Int64 = 0
        var digits = ""
        var rest = Substring(text.trimmingWhitespace)
        guard !rest.isEmpty else { return nil }
        while let c = rest.first {
            if c.isNumber {
                digits.append(c)
                rest = rest.dropFirst()
                continue
            }
            guard let n = Int64(digits) else { return nil }
            digits = ""
            let unit: Int64
            if rest.hasPrefix("ms") { unit = 1_000; rest = rest.dropFirst(2) }
            else if rest.hasPrefix("us") { unit = 1; rest = rest.dropFirst(2) }
            else if rest.hasPrefix("s") { unit = 1_000_000; rest = rest.dropFirst() }
            else if rest.hasPrefix("m") { unit = 60_000_000; rest = rest.dropFirst() }
            else if rest.hasPrefix("h") { unit = 3_600_000_000; rest = rest.dropFirst() }
            else { return nil }
            let product = n.multipliedReportingOverflow(by: unit)
            guard !product.overflow else { return nil }
            let sum = total.addingReportingOverflow(product.partialValue)
            guard !sum.overflow else { return nil }
            total = sum.partialValue
        }
        guard digits.isEmpty else { return nil }
        return .microseconds(total)
    }

    /// The inverse of `parse`, in the largest unit that represents the value exactly.
    public var formatted: String {
        let us = microseconds
        for (unit, suffix) in [(Int64(3_600_000_000), "h"), (60_000_000, "m"), (1_000_000, "s"), (1_000, "ms")]
        where us % unit == 0 && us != 0 {
            return "\(us / unit)\(suffix)"
        }
        return "\(us)us"
    }
}

extension String {
    public var trimmingWhitespace: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
