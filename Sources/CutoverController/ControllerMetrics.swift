import CutoverCore
import CutoverStore
import Metrics

/// The product's own gauges and counters (the loop's live in the runtime).
public enum ControllerMetrics {
    private static let promoteCounter = Counter(label: "cutover_promotions_total", dimensions: [("kind", "promote")])
    private static let autoCounter = Counter(label: "cutover_promotions_total", dimensions: [("kind", "auto")])
    private static let rollbackCounter = Counter(label: "cutover_promotions_total", dimensions: [("kind", "rollback")])
    private static let deploymentGauges = Dictionary(
        uniqueKeysWithValues: DeploymentStatus.allCases.map {
            ($0, Gauge(label: "cutover_deployments", dimensions: [("status", $0.rawValue)]))
        })

    /// `cutover_promotions_total{kind}`: promote, auto, rollback.
    static func promotions(_ kind: PromotionKind) -> Counter {
        switch kind {
        case .promote: promoteCounter
        case .autoPromote: autoCounter
        case .rollback: rollbackCounter
        }
    }

    /// Sets `cutover_deployments{status}` (live deployments, soft-deleted ones excluded) from the database:
    /// called when `/metrics` is scraped, so every replica reports the same numbers.
    public static func refreshDeploymentCounts(_ store: any Store) async {
        guard let counts = try? await store.read({ try await $0.liveDeploymentCounts() }) else { return }
        for (status, gauge) in deploymentGauges { gauge.record(counts[status] ?? 0) }
    }
}
