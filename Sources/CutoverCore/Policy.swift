public enum AutoPromotePolicy: String, Sendable, CaseIterable {
    case first, never
}

public enum ProbeMode: String, Sendable, CaseIterable {
    case http, none
}

/// Per-key exponential backoff of the work queue: 100 ms doubling to a 30 s cap.
public struct Backoff: Sendable, Equatable {
    public var base: Duration
    public var cap: Duration

    public init(base: Duration = .milliseconds(100), cap: Duration = .seconds(30)) {
        self.base = base
        self.cap = cap
    }

    /// The delay before retry number `failures` (1 = first retry).
    public func delay(afterFailures failures: Int) -> Duration {
        let exponent = min(max(failures, 1) - 1, 30)
        let us = base.microseconds.multipliedReportingOverflow(by: Int64(1) << exponent)
        if us.overflow { return cap }
        return min(.microseconds(us.partialValue), cap)
    }
}

/// What the controller needs to decide a deployment's fate.
public struct ReconcilePolicy: Sendable, Equatable {
    public var autoPromote: AutoPromotePolicy
    public var probe: ProbeMode
    public var probePath: String
    public var progressDeadline: Duration

    public init(
        autoPromote: AutoPromotePolicy = .first, probe: ProbeMode = .http, probePath: String = "/healthz",
        progressDeadline: Duration = .seconds(600)
    ) {
        self.autoPromote = autoPromote
        self.probe = probe
        self.probePath = probePath
        self.progressDeadline = progressDeadline
    }
}
