import CutoverCore
import Testing

@Suite("Backoff")
struct BackoffTests {
    @Test("100 ms doubling per failure, capped at 30 s",
          arguments: [
              (0, Duration.milliseconds(100)), (1, .milliseconds(100)), (2, .milliseconds(200)), (3, .milliseconds(400)),
              (4, .milliseconds(800)), (5, .milliseconds(1_600)), (6, .milliseconds(3_200)), (7, .milliseconds(6_400)),
              (8, .milliseconds(12_800)), (9, .milliseconds(25_600)), (10, .seconds(30)), (11, .seconds(30)),
          ])
    func schedule(_ failures: Int, _ expected: Duration) {
        #expect(Backoff().delay(afterFailures: failures) == expected)
    }

    @Test("huge and negative failure counts neither overflow nor go below the base",
          arguments: [(31, Duration.seconds(30)), (32, .seconds(30)), (63, .seconds(30)), (64, .seconds(30)),
                      (1_000, .seconds(30)), (Int(Int32.max), .seconds(30)), (Int.max, .seconds(30)),
                      (-1, .milliseconds(100)), (-1_000_000, .milliseconds(100))])
    func extremes(_ failures: Int, _ expected: Duration) {
        #expect(Backoff().delay(afterFailures: failures) == expected)
    }

    @Test("the delay never decreases and stays within [base, cap]")
    func monotonic() {
        let backoff = Backoff()
        var previous = Duration.zero
        for failures in 0...200 {
            let delay = backoff.delay(afterFailures: failures)
            #expect(delay >= previous)
            #expect(delay >= .milliseconds(100) && delay <= .seconds(30))
            previous = delay
        }
    }

    @Test("a custom base and cap; an overflowing product gives the cap",
          arguments: [
              (Backoff(base: .seconds(1), cap: .seconds(10)), 1, Duration.seconds(1)),
              (Backoff(base: .seconds(1), cap: .seconds(10)), 4, .seconds(8)),
              (Backoff(base: .seconds(1), cap: .seconds(10)), 5, .seconds(10)),
              (Backoff(base: .milliseconds(5), cap: .seconds(300)), 31, .seconds(300)),
              (Backoff(base: .seconds(1_000_000), cap: .seconds(1_000_000_000_000)), 40, .seconds(1_000_000_000_000)),
          ])
    func custom(_ backoff: Backoff, _ failures: Int, _ expected: Duration) {
        #expect(backoff.delay(afterFailures: failures) == expected)
    }
}

@Suite("Duration.parse and .formatted")
struct DurationTests {
    @Test("parses the configuration's durations",
          arguments: [
              ("250ms", Duration.milliseconds(250)), ("30s", .seconds(30)), ("10m", .seconds(600)),
              ("24h", .seconds(86_400)), ("1h30m", .seconds(5_400)), ("1m30s", .seconds(90)),
              ("1s500ms", .milliseconds(1_500)), ("2h0m0s", .seconds(7_200)), ("500us", .microseconds(500)),
              ("0s", .zero), ("0ms", .zero), ("60s", .seconds(60)), ("007s", .seconds(7)),
              (" 30s ", .seconds(30)), ("\t10m\n", .seconds(600)), ("1h1h", .seconds(7_200)),
          ])
    func parses(_ text: String, _ expected: Duration) {
        #expect(Duration.parse(text) == expected)
    }

    @Test("rejects what is not a duration",
          arguments: ["", " ", "10", "5x", "m", "ms", "h1", "1.5h", "-5s", "+5s", "30 s", "1h30", "30S", "10M",
                      "1d", "1w", "5 m", "s", "1h 30m", "abc", "99999999999999999999s", "١٢s", "½s"])
    func rejects(_ text: String) {
        #expect(Duration.parse(text) == nil)
    }

    @Test("a duration too large for microseconds is rejected rather than trapping")
    func rejectsOverflowWithoutTrapping() async {
        // Each fits Int64 as digits, but the product or the sum overflows Int64 microseconds.
        await #expect(processExitsWith: .success) {
            precondition(Duration.parse("9999999999999h") == nil)
        }
        await #expect(processExitsWith: .success) {
            precondition(Duration.parse("2000000000h2000000000h") == nil)
        }
    }

    @Test("formats in the largest exact unit",
          arguments: [
              (Duration.milliseconds(250), "250ms"), (.seconds(30), "30s"), (.seconds(600), "10m"),
              (.seconds(86_400), "24h"), (.seconds(3_600), "1h"), (.seconds(5_400), "90m"), (.seconds(90), "90s"),
              (.milliseconds(1_500), "1500ms"), (.microseconds(1), "1us"), (.microseconds(1_500), "1500us"),
              (.zero, "0us"), (.seconds(172_800), "48h"),
          ])
    func formats(_ duration: Duration, _ expected: String) {
        #expect(duration.formatted == expected)
        #expect(Duration.parse(duration.formatted) == duration, "formatted round-trips through parse")
    }

    @Test("parse then format then parse is stable",
          arguments: ["250ms", "30s", "10m", "24h", "1h30m", "1m30s", "1s500ms", "500us", "0s", "3600s", "120m"])
    func roundTrip(_ text: String) throws {
        let parsed = try #require(Duration.parse(text))
        #expect(Duration.parse(parsed.formatted) == parsed)
    }

    @Test("microseconds and seconds of a Duration",
          arguments: [
              (Duration.seconds(1), Int64(1_000_000)), (.milliseconds(1), 1_000), (.microseconds(7), 7),
              (.nanoseconds(1_999), 1), (.zero, 0), (.seconds(-1), -1_000_000), (.milliseconds(-1_500), -1_500_000),
              (.seconds(86_400 * 365), 31_536_000_000_000),
          ])
    func microseconds(_ duration: Duration, _ expected: Int64) {
        #expect(duration.microseconds == expected)
        #expect(duration.seconds == Double(expected) / 1_000_000)
    }
}

@Suite("Timestamp")
struct TimestampTests {
    @Test("RFC 3339 in UTC with six fractional digits",
          arguments: [
              (Int64(0), "1970-01-01T00:00:00.000000Z"),
              (1, "1970-01-01T00:00:00.000001Z"),
              (999_999, "1970-01-01T00:00:00.999999Z"),
              (1_000_000, "1970-01-01T00:00:01.000000Z"),
              (1_700_000_000_123_456, "2023-11-14T22:13:20.123456Z"),
              (1_795_908_254_643_562, "2026-11-28T23:24:14.643562Z"),
              (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
              (1_798_761_599_999_999, "2026-12-31T23:59:59.999999Z"),
              (253_402_300_799_000_001, "9999-12-31T23:59:59.000001Z"),
          ])
    func rfc3339(_ micros: Int64, _ expected: String) {
        let t = Timestamp(microseconds: micros)
        #expect(t.rfc3339 == expected)
        #expect(t.description == expected)
    }

    @Test("negative values count back from the epoch (floor, not truncation)",
          arguments: [
              (Int64(-1), "1969-12-31T23:59:59.999999Z"),
              (-999_999, "1969-12-31T23:59:59.000001Z"),
              (-1_000_000, "1969-12-31T23:59:59.000000Z"),
              (-1_000_001, "1969-12-31T23:59:58.999999Z"),
              (-1_500_000, "1969-12-31T23:59:58.500000Z"),
              (-86_400_000_000, "1969-12-31T00:00:00.000000Z"),
              (-2_208_988_800_000_000, "1900-01-01T00:00:00.000000Z"),
          ])
    func negative(_ micros: Int64, _ expected: String) {
        #expect(Timestamp(microseconds: micros).rfc3339 == expected)
    }

    @Test("arithmetic and ordering")
    func arithmetic() {
        let t = Timestamp(microseconds: 1_000)
        #expect((t + .seconds(1)).microseconds == 1_001_000)
        #expect((t + .milliseconds(-1)).microseconds == 0)
        #expect((t + .seconds(600)) - t == .seconds(600))
        #expect(t - (t + .microseconds(5)) == .microseconds(-5))
        #expect(t < t + .microseconds(1))
        #expect(!(t < t))
        #expect(t <= t)
        #expect([t + .seconds(2), t, t + .seconds(1)].sorted() == [t, t + .seconds(1), t + .seconds(2)])
    }

    @Test("now() is microseconds since the epoch, after 2024 and non-decreasing")
    func now() {
        let a = Timestamp.now()
        let b = Timestamp.now()
        #expect(a.microseconds > 1_704_067_200_000_000)
        #expect(a <= b)
        #expect(a.rfc3339.hasSuffix("Z") && a.rfc3339.count == 27)
    }
}
