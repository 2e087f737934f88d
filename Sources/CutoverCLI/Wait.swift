import CutoverCore

/// What `cutover wait --for` waits for, decided from the deployment as the API shows it.
public enum WaitCondition: String, CaseIterable, Sendable {
    case ready, production, failed, deleted

    public enum State: Equatable, Sendable {
        case reached
        case waiting
        /// It can no longer happen; the message says why.
        case impossible(String)
    }

    /// `deployment` is nil when it no longer exists (garbage-collected).
    public func evaluate(_ deployment: JSONValue?, id: String) -> State {
        guard let d = deployment?.objectValue else {
            return self == .deleted ? .reached : .impossible("deployment \(id) no longer exists")
        }
        let status = d["status"]?.stringValue ?? ""
        let deleted = !(d["expires_at"]?.isNull ?? true)
        let described = Self.describe(d, id: id)
        switch self {
        case .deleted:
            return deleted ? .reached : .waiting
        case .ready, .production:
            if self == .ready ? status == "Ready" && !deleted : d["is_production"] == .bool(true) { return .reached }
            if deleted { return .impossible("\(described) is deleted; it can no longer become \(rawValue) (restore it first)") }
            if status == "Failed" { return .impossible("\(described); it can no longer become \(rawValue)") }
            return .waiting
        case .failed:
            if status == "Failed" { return .reached }
            if deleted { return .impossible("\(described) is deleted; it can no longer fail") }
            if status == "Ready" { return .impossible("\(described); a Ready deployment does not fail") }
            return .waiting
        }
    }

    /// `deployment v2 is Failed (ProgressDeadlineExceeded: …)`.
    static func describe(_ d: [String: JSONValue], id: String) -> String {
        let status = d["status"]?.stringValue ?? "unknown"
        if let reason = d["status_reason"]?.stringValue, !reason.isEmpty { return "deployment \(id) is \(status) (\(reason))" }
        return "deployment \(id) is \(status)"
    }
}
