import AsyncHTTPClient
import CutoverCore
import NIOCore

/// Checks a registered pod's readiness endpoint.
public protocol ReadinessProber: Sendable {
    func probe(_ url: String) async -> ProbeOutcome
}

/// `GET {acp_url}/healthz` with a timeout, judged by `ProbeVerdict`.
public struct HTTPReadinessProber: ReadinessProber {
    let client: HTTPClient
    let timeout: Duration

    public init(client: HTTPClient, timeout: Duration = .seconds(2)) {
        self.client = client
        self.timeout = timeout
    }

    public func probe(_ url: String) async -> ProbeOutcome {
        do {
            var request = HTTPClientRequest(url: url)
            request.method = .GET
            let response = try await client.execute(request, timeout: .microseconds(timeout.microseconds))
            let body = try await response.body.collect(upTo: 64 * 1024)
            return ProbeVerdict.judge(statusCode: Int(response.status.code), body: Array(buffer: body))
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            return .unhealthy("readiness probe timed out after \(timeout.formatted)")
        } catch {
            let text = "\(error)"
            if text.contains("refused") { return .unhealthy("readiness probe failed: connection refused by \(url)") }
            return .unhealthy("readiness probe failed: \(text)")
        }
    }
}
