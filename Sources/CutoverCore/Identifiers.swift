/// Server-generated identifiers and secrets.
public enum Identifiers {
    /// A random (version 4) UUID in its lowercase text form.
    public static func uuid() -> String {
        var g = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &g) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map(hexByte).joined()
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-"
            + String(c[20..<32])
    }

    /// 256 random bits from the system's CSPRNG, hex-encoded.
    public static func apiKey() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in hexByte(UInt8.random(in: .min ... .max, using: &g)) }.joined()
    }

    /// The leading part of an API key used to find its agent; the whole key is then compared in constant time.
    public static func apiKeyLookup(_ key: String) -> String { String(key.prefix(16)) }

    private static func hexByte(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 0x0F)]])
    }
}
