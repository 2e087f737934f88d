import CutoverCLI
import CutoverCore
import Foundation
import Testing

@Suite("wait conditions")
struct WaitConditionTests {
    func d(_ status: String, production: Bool = false, deleted: Bool = false, reason: String? = nil) -> JSONValue {
        [
            "status": .string(status), "is_production": .bool(production),
            "expires_at": deleted ? "2026-12-01T00:00:00.000000Z" : nil, "status_reason": JSONValue(reason),
        ]
    }

    @Test(arguments: [
        (WaitCondition.ready, "Ready", false, false, "reached"),
        (.ready, "Pending", false, false, "waiting"),
        (.ready, "Failed", false, false, "impossible"),
        (.ready, "Ready", false, true, "impossible"),
        (.production, "Ready", true, false, "reached"),
        (.production, "Ready", false, false, "waiting"),
        (.production, "Failed", false, false, "impossible"),
        (.production, "Pending", false, true, "impossible"),
        (.failed, "Failed", false, false, "reached"),
        (.failed, "Pending", false, false, "waiting"),
        (.failed, "Ready", false, false, "impossible"),
        (.deleted, "Ready", false, true, "reached"),
        (.deleted, "Ready", true, false, "waiting"),
    ])
    func decisions(_ condition: WaitCondition, _ status: String, _ production: Bool, _ deleted: Bool, _ want: String) {
        let state = condition.evaluate(d(status, production: production, deleted: deleted), id: "v2")
        let got: String = switch state {
        case .reached: "reached"
        case .waiting: "waiting"
        case .impossible: "impossible"
        }
        #expect(got == want)
    }

    @Test func aGoneDeploymentIsDeletedAndNothingElse() {
        #expect(WaitCondition.deleted.evaluate(nil, id: "v2") == .reached)
        #expect(WaitCondition.ready.evaluate(nil, id: "v2") == .impossible("deployment v2 no longer exists"))
    }

    @Test func theMessageCarriesStatusAndReason() {
        let state = WaitCondition.ready.evaluate(d("Failed", reason: "ProbeFailed: 503"), id: "v2")
        #expect(state == .impossible("deployment v2 is Failed (ProbeFailed: 503); it can no longer become ready"))
    }
}

@Suite("output")
struct OutputTests {
    @Test func tablesAlignColumnsThreeSpacesApartAndColourOnlyWhenAsked() {
        var table = Table(columns: ["NAME", "STATUS", "AGE"])
        table.rows = [[.init("v1"), .init("Ready", colour: 32), .init("5s")], [.init("build-4312"), .init("Pending", colour: 33), .init("12m")]]
        #expect(table.render(colour: false) == [
            "NAME         STATUS    AGE",
            "v1           Ready     5s",
            "build-4312   Pending   12m",
        ])
        #expect(table.render(colour: true)[1] == "v1           \u{1B}[32mReady\u{1B}[0m     5s")
    }

    @Test(arguments: [(0, "0s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"), (47 * 3600, "47h"), (3 * 86400, "3d")])
    func agesAreRelative(_ seconds: Int, _ want: String) {
        let then = Date(timeIntervalSince1970: 1_800_000_000)
        let text = Timestamp(microseconds: 1_800_000_000_000_000).rfc3339
        #expect(Age.describe(text, now: then.addingTimeInterval(Double(seconds))) == want)
    }

    @Test func timestampsParseWithTheirMicroseconds() {
        let date = Age.parse("2026-11-28T23:24:14.643562Z")
        #expect(date.map { ($0.timeIntervalSince1970 * 1_000_000).rounded() } == 1_795_908_254_643_562)
        #expect(Age.parse("yesterday") == nil)
    }

    @Test func yamlIsTheSameValueWithSortedKeys() {
        let value: JSONValue = ["b": "true", "a": ["x": 1, "y": nil], "c": [.number(1.5), "two: 2"]]
        #expect(YAMLText.render(value) == """
            a:
              x: 1
              y: null
            b: 'true'
            c:
            - 1.5
            - 'two: 2'
            """)
    }
}
