import CutoverCore
import Foundation
import Testing

private let lengthProblem = "must be 1 to 63 characters long"
private let patternProblem = "must match ^[a-z0-9-]+$ (lowercase letters, digits and '-')"
private let idProblem = "must match ^[A-Za-z0-9._:-]{1,128}$"

@Suite("Rules")
struct RulesTests {
    @Test("agent names: ^[a-z0-9-]+$, 1 to 63 characters",
          arguments: [
              ("a", nil), ("support-bot", nil), ("a1-b2-c3", nil), ("0", nil), ("-", nil), ("--x--", nil),
              (String(repeating: "a", count: 63), nil),
              ("", lengthProblem), (String(repeating: "a", count: 64), lengthProblem),
              (String(repeating: "é", count: 32), lengthProblem),
              ("Support", patternProblem), ("support_bot", patternProblem), ("support.bot", patternProblem),
              ("support bot", patternProblem), (" a", patternProblem), ("a\n", patternProblem),
              ("é", patternProblem), ("bot/1", patternProblem), ("ＡＢ", patternProblem),
          ] as [(String, String?)])
    func agentNames(_ name: String, _ expected: String?) {
        #expect(Rules.agentNameProblem(name) == expected)
    }

    @Test("deployment ids: ^[A-Za-z0-9._:-]{1,128}$",
          arguments: [
              ("d", true), ("v1.2.3", true), ("build_42:amd64-X", true), ("ABC-def.0_9:z", true),
              ("550e8400-e29b-41d4-a716-446655440000", true), (String(repeating: "x", count: 128), true),
              ("", false), (String(repeating: "x", count: 129), false), ("a/b", false), ("a b", false),
              ("a@b", false), ("ñ", false), ("a+b", false), ("a%2Fb", false), ("..;", false), ("a\u{0}", false),
          ])
    func deploymentIds(_ id: String, _ valid: Bool) {
        #expect(Rules.deploymentIdProblem(id) == (valid ? nil : idProblem))
    }

    @Test("descriptions: at most 4 KiB of UTF-8",
          arguments: [
              ("", true), (String(repeating: "x", count: 4_096), true), (String(repeating: "x", count: 4_097), false),
              (String(repeating: "é", count: 2_048), true), (String(repeating: "é", count: 2_049), false),
              (String(repeating: "🚀", count: 1_024), true), (String(repeating: "🚀", count: 1_025), false),
          ])
    func descriptions(_ text: String, _ valid: Bool) {
        #expect(Rules.descriptionProblem(text) == (valid ? nil : "must be at most 4 KiB"))
        #expect(Rules.maxDescriptionBytes == 4 * 1024)
        #expect(Rules.maxMetadataBytes == 64 * 1024)
    }

    @Test("short texts: not empty, at most max bytes",
          arguments: [
              ("x", 255, nil), (String(repeating: "x", count: 255), 255, nil),
              (String(repeating: "x", count: 256), 255, "must be at most 255 characters"), ("", 255, "must not be empty"),
              ("abcd", 3, "must be at most 3 characters"), ("abc", 3, nil),
          ] as [(String, Int, String?)])
    func shortTexts(_ text: String, _ max: Int, _ expected: String?) {
        #expect(Rules.shortTextProblem(text, max: max) == expected)
    }
}

@Suite("ACPURL")
struct ACPURLTests {
    struct Accepted: Sendable, CustomTestStringConvertible {
        var text: String
        var scheme: String
        var host: String
        var port: Int?
        var testDescription: String { text }
    }

    static let accepted: [Accepted] = [
        .init(text: "http://agent.default.svc.cluster.local:8000", scheme: "http",
              host: "agent.default.svc.cluster.local", port: 8000),
        .init(text: "https://example.com", scheme: "https", host: "example.com", port: nil),
        .init(text: "https://example.com/", scheme: "https", host: "example.com", port: nil),
        .init(text: "HTTP://Example.COM/Path", scheme: "http", host: "example.com", port: nil),
        .init(text: "HtTpS://example.com:443/a", scheme: "https", host: "example.com", port: 443),
        .init(text: "http://10.1.2.3:8080/a/b?c=d#e", scheme: "http", host: "10.1.2.3", port: 8080),
        .init(text: "http://h?x=1", scheme: "http", host: "h", port: nil),
        .init(text: "http://h#frag", scheme: "http", host: "h", port: nil),
        .init(text: "http://h:1", scheme: "http", host: "h", port: 1),
        .init(text: "http://h:65535", scheme: "http", host: "h", port: 65535),
        .init(text: "http://[::1]:8080/", scheme: "http", host: "::1", port: 8080),
        .init(text: "http://[fd00::1]", scheme: "http", host: "fd00::1", port: nil),
        .init(text: "https://[2001:DB8::A]:9443/acp", scheme: "https", host: "2001:db8::a", port: 9443),
        .init(text: "http://localhost:8000", scheme: "http", host: "localhost", port: 8000),
    ]

    @Test("http and https URLs with a host are accepted and parsed", arguments: accepted)
    func accepts(_ c: Accepted) throws {
        let url = try #require(ACPURL(c.text))
        #expect(url.scheme == c.scheme)
        #expect(url.host == c.host)
        #expect(url.port == c.port)
        #expect(ACPURL.problem(c.text, allowedHosts: .any) == nil)
    }

    @Test("other schemes, no host, userinfo and bad ports are rejected",
          arguments: [
              "", "ftp://example.com", "file:///etc/passwd", "gopher://h", "ws://h", "mailto:a@b", "javascript:alert(1)",
              "example.com", "h:8000", "//h", "http:/h", "http:h", "http//h",
              "http://", "https://", "http:///path", "http://:8080", "http://?x", "http://#x",
              "http://user@h", "http://user:pw@h:80", "http://@h", "https://a@b@c",
              "http://h:0", "http://h:65536", "http://h:99999", "http://h:abc", "http://h:", "http://h:-1",
              "http://h:80x", "http://h ost", "http://h\t/", " http://h",
              "http://[::1", "http://[::1]x", "http://[::1]:", "http://[::1]:0", "http://[]:80",
          ])
    func rejects(_ text: String) {
        #expect(ACPURL(text) == nil)
        #expect(ACPURL.problem(text, allowedHosts: .any) == "must be an http:// or https:// URL with a host")
    }

    @Test("an authority that is not host[:port] is rejected (unbracketed IPv6, stray colons, signed port, non-IP literal)",
          arguments: ["http://::1/", "http://a:b:80/", "http://h:+80/", "http://[not-an-ip]:80/"])
    func rejectsMalformedAuthority(_ text: String) {
        #expect(ACPURL(text) == nil, "parsed as host '\(ACPURL(text)?.host ?? "")' port \(ACPURL(text)?.port ?? -1)")
    }

    @Test("at most 2048 characters")
    func length() {
        let base = "http://h/"
        let fits = base + String(repeating: "a", count: 2_048 - base.count)
        #expect(ACPURL.problem(fits, allowedHosts: .any) == nil)
        #expect(ACPURL.problem(fits + "a", allowedHosts: .any) == "must be at most 2048 characters")
    }

    @Test("the host is checked against the allowlist, and the problem names it",
          arguments: [
              ("http://agent.ns.svc.cluster.local:8000", true), ("http://10.0.0.5:8080/", true),
              ("http://[fd00::1]:8000", true), ("http://[FD00::abcd]", true),
              ("http://169.254.169.254/latest/meta-data", false), ("http://[::1]:8000", false),
              ("http://svc.cluster.local", false), ("https://example.com", false),
          ])
    func allowlisted(_ text: String, _ allowed: Bool) throws {
        let allowlist = try HostAllowlist(parsing: ["*.svc.cluster.local", "10.0.0.0/8", "fd00::/8"])
        let problem = ACPURL.problem(text, allowedHosts: allowlist)
        if allowed {
            #expect(problem == nil)
        } else {
            let host = try #require(ACPURL(text)).host
            #expect(problem == "host '\(host)' is not in the allowed hosts (*.svc.cluster.local,10.0.0.0/8,fd00::/8)")
        }
    }
}

@Suite("HostAllowlist")
struct HostAllowlistTests {
    static let entries = ["agent.example.com", "*.svc.cluster.local", "10.0.0.0/8", "fd00::/8"]

    @Test("exact hosts, *.suffix wildcards and IPv4/IPv6 CIDRs",
          arguments: [
              ("agent.example.com", true), ("AGENT.Example.com", true), ("other.example.com", false),
              ("x.agent.example.com", false), ("agent.example.com.evil.net", false), ("example.com", false),
              ("a.svc.cluster.local", true), ("a.b.svc.cluster.local", true), ("A.SVC.cluster.local", true),
              ("svc.cluster.local", false), (".svc.cluster.local", false), ("evilsvc.cluster.local", false),
              ("a.svc.cluster.local.evil.net", false), ("cluster.local", false),
              ("10.0.0.1", true), ("10.255.255.255", true), ("10.0.0.0", true),
              ("11.0.0.1", false), ("9.255.255.255", false), ("100.0.0.1", false), ("10.0.0.1.nip.io", false),
              ("fd00::1", true), ("fdff:ffff::1", true), ("FD12:3456::1", true),
              ("fe80::1", false), ("::1", false), ("fc00::1", false), ("::ffff:10.0.0.1", false),
              ("", false), ("localhost", false),
          ])
    func matches(_ host: String, _ allowed: Bool) throws {
        let allowlist = try HostAllowlist(parsing: Self.entries)
        #expect(allowlist.allows(host) == allowed)
        #expect(!allowlist.allowsAny)
    }

    @Test("CIDR boundaries, including prefixes that do not fall on an octet",
          arguments: [
              ("172.16.0.0/12", "172.16.0.0", true), ("172.16.0.0/12", "172.31.255.255", true),
              ("172.16.0.0/12", "172.32.0.0", false), ("172.16.0.0/12", "172.15.255.255", false),
              ("192.168.1.0/24", "192.168.1.255", true), ("192.168.1.0/24", "192.168.2.0", false),
              ("10.1.2.3/32", "10.1.2.3", true), ("10.1.2.3/32", "10.1.2.4", false),
              ("10.1.2.99/24", "10.1.2.1", true),
              ("0.0.0.0/0", "203.0.113.7", true), ("0.0.0.0/0", "::1", false), ("0.0.0.0/0", "example.com", false),
              ("::/0", "2001:db8::1", true), ("::/0", "10.0.0.1", false),
              ("2001:db8::/32", "2001:db8:ffff::1", true), ("2001:db8::/32", "2001:db9::1", false),
              ("fd00::/7", "fc00::1", true), ("fd00::/7", "fe00::1", false),
              ("::1/128", "::1", true), ("::1/128", "::2", false),
              ("10.0.0.0/8", "010.0.0.1", false),
          ])
    func cidr(_ entry: String, _ host: String, _ allowed: Bool) throws {
        #expect(try HostAllowlist(parsing: [entry]).allows(host) == allowed)
    }

    @Test("a bad CIDR throws a 422 naming the entry",
          arguments: ["10.0.0.0/33", "10.0.0/8", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1", "not-an-ip/8",
                      "fd00::/129", "/8", "10.0.0.0/8/8", "256.0.0.0/8", "fd00::/ 8"])
    func badCIDR(_ entry: String) throws {
        let caught = CutoverError.caught { try HostAllowlist(parsing: ["*.ok.local", entry]) }
        let error = try #require(caught)
        #expect(error.status == 422)
        #expect(error == .invalid("acp-allowed-hosts", "'\(entry)' is not a valid CIDR"))
    }

    @Test("an empty list allows any host",
          arguments: [[], [""], ["  ", ""]] as [[String]])
    func empty(_ entries: [String]) throws {
        let allowlist = try HostAllowlist(parsing: entries)
        #expect(allowlist.allowsAny)
        #expect(allowlist.description == "any")
        #expect(allowlist == .any)
        for host in ["example.com", "10.0.0.1", "::1", "169.254.169.254", "svc.cluster.local"] {
            #expect(allowlist.allows(host))
        }
    }

    @Test("entries are trimmed and case-insensitive; the description lists them as given")
    func normalised() throws {
        let allowlist = try HostAllowlist(parsing: [" *.Svc.Cluster.Local ", "Agent.Example.COM"])
        #expect(allowlist.allows("a.svc.cluster.local"))
        #expect(allowlist.allows("agent.example.com"))
        #expect(!allowlist.allows("svc.cluster.local"))
        #expect(allowlist.description == " *.Svc.Cluster.Local ,Agent.Example.COM")
    }
}

@Suite("constantTimeEquals")
struct ConstantTimeEqualsTests {
    @Test("equal exactly when the strings are equal",
          arguments: [
              ("", "", true), ("a", "a", true), ("abc", "abc", true), ("é", "é", true),
              ("abc", "abd", false), ("abc", "ab", false), ("ab", "abc", false), ("", "a", false), ("a", "", false),
              ("abc", "ABC", false), ("é", "e", false), ("a\u{0}", "a", false), ("a", "a\u{0}", false),
              (String(repeating: "f", count: 64), String(repeating: "f", count: 64), true),
              (String(repeating: "f", count: 64), String(repeating: "f", count: 63) + "e", false),
              ("e" + String(repeating: "f", count: 63), String(repeating: "f", count: 64), false),
          ])
    func compares(_ a: String, _ b: String, _ expected: Bool) {
        #expect(constantTimeEquals(a, b) == expected)
        #expect(constantTimeEquals(b, a) == expected)
    }

    @Test("lengths that differ by a multiple of 256 are still unequal (the longer one padded with NULs)",
          arguments: [("", 256), ("a", 256), ("key", 512)])
    func lengthModulo256(_ a: String, _ nulPadding: Int) {
        let b = a + String(repeating: "\u{0}", count: nulPadding)
        let forward = constantTimeEquals(a, b), backward = constantTimeEquals(b, a)
        #expect(!forward, "\(a.debugDescription) vs itself plus \(nulPadding) NULs")
        #expect(!backward, "\(a.debugDescription) plus \(nulPadding) NULs vs \(a.debugDescription)")
    }

    @Test("random keys equal only themselves")
    func keys() {
        let a = Identifiers.apiKey(), b = Identifiers.apiKey()
        #expect(constantTimeEquals(a, a))
        #expect(constantTimeEquals(a, String(a)))
        #expect(!constantTimeEquals(a, b))
        #expect(!constantTimeEquals(a, String(a.prefix(63))))
    }
}

@Suite("Identifiers")
struct IdentifiersTests {
    private static let hex = Set("0123456789abcdef")

    @Test("uuid() is a lowercase version 4, RFC 4122 variant UUID, and each one is new")
    func uuid() {
        var seen = Set<String>()
        for _ in 0..<500 {
            let id = Identifiers.uuid()
            let chars = Array(id)
            #expect(id.split(separator: "-", omittingEmptySubsequences: false).map(\.count) == [8, 4, 4, 4, 12], "\(id)")
            #expect(chars.count == 36)
            #expect(chars.enumerated().allSatisfy { [8, 13, 18, 23].contains($0.offset) ? $0.element == "-" : Self.hex.contains($0.element) }, "\(id)")
            #expect(chars[14] == "4", "version nibble of \(id)")
            #expect(chars.count > 19 && "89ab".contains(chars[19]), "variant of \(id)")
            #expect(Rules.deploymentIdProblem(id) == nil)
            #expect(UUID(uuidString: id)?.uuidString.lowercased() == id)
            seen.insert(id)
        }
        #expect(seen.count == 500)
    }

    @Test("apiKey() is 64 lowercase hex characters (256 bits), and each one is new")
    func apiKey() {
        var seen = Set<String>()
        for _ in 0..<500 {
            let key = Identifiers.apiKey()
            #expect(key.count == 64)
            #expect(key.allSatisfy { Self.hex.contains($0) }, "\(key)")
            seen.insert(key)
        }
        #expect(seen.count == 500)
    }

    @Test("the lookup prefix is the first 16 characters of the key")
    func lookup() {
        let key = Identifiers.apiKey()
        #expect(Identifiers.apiKeyLookup(key) == String(key.prefix(16)))
        #expect(Identifiers.apiKeyLookup(key).count == 16)
        #expect(Identifiers.apiKeyLookup("short") == "short")
    }
}

@Suite("CutoverError")
struct CutoverErrorTests {
    @Test("each error maps to its HTTP status and keeps its message",
          arguments: [
              (CutoverError.malformed("m"), 400), (.notFound("m"), 404), (.conflict("m"), 409), (.gone("m"), 410),
              (.unauthorized("m"), 401), (.forbidden("m"), 403), (.payloadTooLarge("m"), 413),
              (.unavailable("m"), 503),
          ])
    func status(_ error: CutoverError, _ status: Int) {
        #expect(error.status == status)
        #expect(error.message == "m")
    }

    @Test("validation errors answer 422 and list every field problem")
    func validation() {
        let error = CutoverError.validation([
            FieldProblem(field: "name", problem: "must be 1 to 63 characters long"),
            FieldProblem(field: "acp_url", problem: "must be an http:// or https:// URL with a host"),
        ])
        #expect(error.status == 422)
        #expect(error.message
            == "invalid request: name: must be 1 to 63 characters long; acp_url: must be an http:// or https:// URL with a host")
        #expect(CutoverError.invalid("name", "x") == .validation([FieldProblem(field: "name", problem: "x")]))
    }

    @Test("not-found helpers name what was not found")
    func notFound() {
        #expect(CutoverError.agentNotFound("bot") == .notFound("agent 'bot' not found"))
        #expect(CutoverError.deploymentNotFound("d", agent: "a") == .notFound("deployment 'd' not found for agent 'a'"))
    }
}

@Suite("JSONValue")
struct JSONValueTests {
    @Test("accessors and type names",
          arguments: [
              (JSONValue.null, "null"), (.bool(true), "boolean"), (.number(1), "number"), (.string("s"), "string"),
              (.array([]), "array"), (.object([:]), "object"),
          ])
    func accessors(_ value: JSONValue, _ typeName: String) {
        #expect(value.typeName == typeName)
        #expect((value.objectValue != nil) == (typeName == "object"))
        #expect((value.stringValue != nil) == (typeName == "string"))
        #expect(value.isNull == (typeName == "null"))
    }

    @Test("literals and optional initialisers")
    func literals() {
        let v: JSONValue = ["name": "bot", "n": 2, "ok": true, "none": nil, "list": [1, "x"]]
        #expect(v.objectValue?["name"] == .string("bot"))
        #expect(v.objectValue?["n"] == .number(2))
        #expect(v.objectValue?["none"] == .null)
        #expect(JSONValue(nil as String?) == .null)
        #expect(JSONValue("x" as String?) == .string("x"))
        #expect(JSONValue(Timestamp(microseconds: 0) as Timestamp?) == .string("1970-01-01T00:00:00.000000Z"))
        #expect(JSONValue(nil as Timestamp?) == .null)
    }
}
