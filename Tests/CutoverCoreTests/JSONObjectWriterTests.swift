import CutoverCore
import Testing

@Suite("JSONObjectWriter")
struct JSONObjectWriterTests {
    @Test("writes members in the order given, the same bytes as serializing the equal JSONValue")
    func sameBytesAsTheCodec() throws {
        let created = Timestamp(microseconds: 1_764_372_254_643_562)
        let bytes = JSONObjectWriter.object { o in
            o.field("a_flag", true)
            o.field("b_count", Int64(-42))
            o.field("c_text", "quote \" backslash \\ newline \n tab \t nul \u{0}")
            o.field("d_missing", String?.none)
            o.field("e_time", created)
            o.field("f_no_time", Timestamp?.none)
            o.field("g_object", ["z": 1, "a": ["x", nil]] as [String: JSONValue]?)
            o.field("h_no_object", [String: JSONValue]?.none)
            o.field("i_value", JSONValue.array([.number(1.5), .null]))
            o.field("j_raw") { $0.append(contentsOf: "[]".utf8) }
        }
        let expected: JSONValue = [
            "a_flag": true, "b_count": -42, "c_text": .string("quote \" backslash \\ newline \n tab \t nul \u{0}"),
            "d_missing": nil, "e_time": .string(created.rfc3339), "f_no_time": nil,
            "g_object": ["z": 1, "a": ["x", nil]], "h_no_object": nil, "i_value": [.number(1.5), nil], "j_raw": [],
        ]
        #expect(try JSONCodec.parse(bytes) == expected)
        #expect(bytes == JSONCodec.serialize(expected))
    }

    @Test("an empty object and arrays of objects")
    func emptyAndArrays() throws {
        #expect(JSONObjectWriter.object { _ in } == Array("{}".utf8))
        let list = JSONObjectWriter.array([1, 2] as [Int64]) { n, out in
            JSONObjectWriter.write(into: &out) { $0.field("n", n) }
        }
        #expect(String(decoding: list, as: UTF8.self) == #"[{"n":1},{"n":2}]"#)
        #expect(JSONObjectWriter.array([Int64]()) { _, _ in } == Array("[]".utf8))
    }

    @Test("RFC 3339 with six fractional digits, in UTC", arguments: [
        (Int64(0), "1970-01-01T00:00:00.000000Z"),
        (1_764_372_254_643_562, "2025-11-28T23:24:14.643562Z"),
        (951_782_400_000_001, "2000-02-29T00:00:00.000001Z"),
        (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
    ])
    func rfc3339(_ microseconds: Int64, _ text: String) {
        let t = Timestamp(microseconds: microseconds)
        #expect(t.rfc3339 == text)
        var quoted: [UInt8] = []
        t.writeRFC3339(into: &quoted)
        #expect(String(decoding: quoted, as: UTF8.self) == "\"\(text)\"")
    }
}
