#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The record rules for names, ids and URLs. Each returns the problem a person reads, or nil.
public enum Rules {
    public static let maxDescriptionBytes = 4 * 1024
    public static let maxMetadataBytes = 64 * 1024

    public static func agentNameProblem(_ name: String) -> String? {
        guard (1...63).contains(name.utf8.count) else { return "must be 1 to 63 characters long" }
        guard name.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }) else {
            return "must match ^[a-z0-9-]+$ (lowercase letters, digits and '-')"
        }
        return nil
    }

    public static func deploymentIdProblem(_ id: String) -> String? {
        guard (1...128).contains(id.utf8.count),
            id.utf8.allSatisfy({ isAlphanumeric($0) || $0 == 46 || $0 == 95 || $0 == 58 || $0 == 45 })
        else { return "must match ^[A-Za-z0-9._:-]{1,128}$" }
        return nil
    }

    /// PostgreSQL text cannot hold U+0000 and SQLite cuts a value there: such a string is refused rather
    /// than stored as something other than what was acknowledged. (JSON metadata keeps it, escaped.)
    public static func nulProblem(_ text: String) -> String? {
        text.utf8.contains(0) ? "must not contain the NUL character (U+0000)" : nil
    }

    public static func descriptionProblem(_ text: String) -> String? {
        text.utf8.count > maxDescriptionBytes ? "must be at most 4 KiB" : nil
    }

    public static func shortTextProblem(_ text: String, max: Int = 255) -> String? {
        text.utf8.count > max ? "must be at most \(max) characters" : (text.isEmpty ? "must not be empty" : nil)
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122)
    }
}

/// A parsed http(s) URL: enough to check the scheme and the host against the allowlist.
public struct ACPURL: Sendable, Equatable {
    public var scheme: String
    public var host: String
    public var port: Int?

    /// Returns the problem with `text` as an agent URL, or nil when it is acceptable.
    public static func problem(_ text: String, allowedHosts: HostAllowlist) -> String? {
        guard text.utf8.count <= 2048 else { return "must be at most 2048 characters" }
        guard let url = ACPURL(text) else { return "must be an http:// or https:// URL with a host" }
        guard allowedHosts.allows(url.host) else {
            return "host '\(url.host)' is not in the allowed hosts (\(allowedHosts.description))"
        }
        return nil
    }

    public init?(_ text: String) {
        let lower = text.lowercased()
        let rest: Substring
        if lower.hasPrefix("http://") {
            scheme = "http"
            rest = text.dropFirst(7)
        } else if lower.hasPrefix("https://") {
            scheme = "https"
            rest = text.dropFirst(8)
        } else {
            return nil
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.contains("@"), !authority.contains(where: { $0.isWhitespace }) else { return nil }
        var hostPart = Substring(authority)
        var portPart: Substring?
        if hostPart.hasPrefix("[") {
            guard let close = hostPart.firstIndex(of: "]") else { return nil }
            let after = hostPart[hostPart.index(after: close)...]
            if after.hasPrefix(":") { portPart = after.dropFirst() } else if !after.isEmpty { return nil }
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
            var v6 = in6_addr()
            guard inet_pton(AF_INET6, String(hostPart), &v6) == 1 else { return nil }
        } else if let colon = hostPart.lastIndex(of: ":") {
            portPart = hostPart[hostPart.index(after: colon)...]
            hostPart = hostPart[..<colon]
            guard !hostPart.contains(":") else { return nil }
        }
        guard !hostPart.isEmpty else { return nil }
        host = hostPart.lowercased()
        if let portPart {
            guard portPart.allSatisfy({ $0.isASCII && $0.isNumber }), let p = Int(portPart), (1...65535).contains(p)
            else { return nil }
            port = p
        }
    }
}

/// The optional SSRF guard on registered URLs: exact hosts, `*.suffix` wildcards and IPv4/IPv6 CIDRs.
public struct HostAllowlist: Sendable, Equatable, CustomStringConvertible {
    enum Entry: Sendable, Equatable {
        case exact(String)
        case suffix(String)
        case cidr([UInt8], prefix: Int)
    }

    let entries: [Entry]
    public let description: String

    public static let any = HostAllowlist(entries: [], description: "any")

    public var allowsAny: Bool { entries.isEmpty }

    /// Parses `--acp-allowed-hosts` entries; throws a message naming the bad entry.
    public init(parsing items: [String]) throws(CutoverError) {
        var entries: [Entry] = []
        for raw in items.map({ $0.trimmingWhitespace.lowercased() }) where !raw.isEmpty {
            if raw.hasPrefix("*.") {
                entries.append(.suffix(String(raw.dropFirst(1))))
            } else if let slash = raw.firstIndex(of: "/") {
                guard let bytes = Self.address(String(raw[..<slash])), let prefix = Int(raw[raw.index(after: slash)...]),
                    (0...(bytes.count * 8)).contains(prefix)
                else { throw .invalid("acp-allowed-hosts", "'\(raw)' is not a valid CIDR") }
                entries.append(.cidr(bytes, prefix: prefix))
            } else {
                entries.append(.exact(raw))
            }
        }
        self.entries = entries
        self.description = entries.isEmpty ? "any" : items.joined(separator: ",")
    }

    private init(entries: [Entry], description: String) {
        self.entries = entries
        self.description = description
    }

    public func allows(_ host: String) -> Bool {
        if entries.isEmpty { return true }
        let host = host.lowercased()
        let address = Self.address(host)
        return entries.contains { entry in
            switch entry {
            case .exact(let h): return h == host
            case .suffix(let s): return host.hasSuffix(s) && host.count > s.count
            case .cidr(let net, let prefix):
                guard let address, address.count == net.count else { return false }
                return Self.matches(address, net, prefix)
            }
        }
    }

    static func matches(_ a: [UInt8], _ b: [UInt8], _ prefix: Int) -> Bool {
        var remaining = prefix
        for i in 0..<a.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if a[i] & mask != b[i] & mask { return false }
            remaining -= bits
        }
        return true
    }

    static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

/// Compares secrets without an early exit, so the time taken does not reveal how much matched.
public func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff: UInt8 = x.count == y.count ? 0 : 1
    for i in 0..<max(x.count, y.count) {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}
