import CutoverCore

/// Which request headers reach the agent (SPEC §5): `x-*` and W3C trace context, never credentials or
/// hop-by-hop headers; Cutover's own `x-agent-api-key` replaces any the client sent.
public enum HeaderPolicy {
    static let traceHeaders: Set<String> = ["traceparent", "tracestate", "baggage"]
    static let credentials: Set<String> = ["authorization", "cookie", "x-api-key", "x-agent-api-key", "proxy-authorization"]
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "content-length", "host",
    ]

    /// The headers to send upstream, given the client's.
    public static func upstream(_ incoming: [(name: String, value: String)], apiKey: String, newRequestId: () -> String)
        -> [(String, String)]
    {
        var out: [(String, String)] = [("content-type", "application/json")]
        var hasRequestId = false
        for (rawName, value) in incoming {
            let name = rawName.lowercased()
            guard !credentials.contains(name), !hopByHop.contains(name) else { continue }
            guard name.hasPrefix("x-") || traceHeaders.contains(name) else { continue }
            if name == "x-request-id" { hasRequestId = true }
            out.append((name, value))
        }
        if !hasRequestId { out.append(("x-request-id", newRequestId())) }
        out.append(("x-agent-api-key", apiKey))
        return out
    }

    /// The upstream response headers passed back to the client: all but hop-by-hop ones.
    public static func downstream(_ upstream: [(name: String, value: String)]) -> [(String, String)] {
        upstream.compactMap { (name, value) in hopByHop.contains(name.lowercased()) ? nil : (name.lowercased(), value) }
    }
}
