import CutoverCore

/// Which request headers reach the agent: `x-*` and W3C trace context, never credentials or
/// hop-by-hop headers; Cutover's own `x-agent-api-key` replaces any the client sent.
public enum HeaderPolicy {
    static let traceHeaders: Set<String> = ["traceparent", "tracestate", "baggage"]
    static let credentials: Set<String> = ["authorization", "cookie", "x-api-key", "x-agent-api-key", "proxy-authorization"]
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "content-length", "host",
    ]

    /// A header that would be forwarded but whose value is not valid UTF-8: the server's HTTP parser has
    /// already replaced the bad bytes, so forwarding it would change it silently.
    public struct InvalidHeader: Error, CustomStringConvertible {
        public var name: String
        public var description: String {
            "header '\(name)' holds bytes that are not valid UTF-8; it cannot be forwarded unchanged"
        }
    }

    /// The headers to send upstream, given the client's. Besides the fixed hop-by-hop set, every header
    /// the client's `Connection` header names is hop-by-hop too (RFC 9110 §7.6.1) and stays here.
    public static func upstream(_ incoming: [(name: String, value: String)], apiKey: String, newRequestId: () -> String)
        throws(InvalidHeader) -> [(String, String)]
    {
        var out: [(String, String)] = [("content-type", "application/json")]
        var hasRequestId = false
        var connectionNamed = Set<String>()
        for (name, value) in incoming where name.lowercased() == "connection" {
            for token in value.split(separator: ",") {
                connectionNamed.insert(String(token).trimmingWhitespace.lowercased())
            }
        }
        for (rawName, value) in incoming {
            let name = rawName.lowercased()
            guard !credentials.contains(name), !hopByHop.contains(name), !connectionNamed.contains(name) else { continue }
            guard name.hasPrefix("x-") || traceHeaders.contains(name) else { continue }
            if value.unicodeScalars.contains("\u{FFFD}") { throw InvalidHeader(name: name) }
            if name == "x-request-id" { hasRequestId = true }
            out.append((name, value))
        }
        if !hasRequestId { out.append(("x-request-id", newRequestId())) }
        out.append(("x-agent-api-key", apiKey))
        return out
    }
}
