import AsyncHTTPClient
import CutoverCore
import CutoverRouting
import NIOCore

/// Checks a registered pod's readiness endpoint.
public protocol ReadinessProber: Sendable {
    func probe(_ url: String) async -> ProbeOutcome
}

/// `GET {acp_url}/healthz`, judged by `ProbeVerdict`. The timeout bounds the whole answer, body included:
/// a pod that trickles its body cannot hold a controller worker longer than that.
public struct HTTPReadinessProber: ReadinessProber {
    let client: HTTPClient
    let timeout: Duration

    public init(client: HTTPClient, timeout: Duration = .seconds(2)) {
        self.client = client
        self.timeout = timeout
    }

    public func probe(_ url: String) async -> ProbeOutcome {
        let outcome = await withDeadline(timeout) { [client] () -> ProbeOutcome in
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .GET
                let response = try await client.execute(request, timeout: .seconds(3600))
                let body = try await response.body.collect(upTo: 64 * 1024)
                return ProbeVerdict.judge(statusCode: Int(response.status.code), body: Array(buffer: body))
            } catch {
                return .unhealthy("readiness probe failed: \(Outbound.describe(error, url: url))")
            }
        }
        return outcome ?? .unhealthy("readiness probe timed out after \(timeout.formatted)")
    }
}
