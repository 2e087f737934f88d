import CutoverCore
import Testing

@Suite("JSONCodec")
struct JSONCodecTests {
    @Test(arguments: [
        ("null", JSONValue.null), ("true", .bool(true)), ("false", .bool(false)), ("0", .number(0)),
        ("-12.5e2", .number(-1250)), ("\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\"", .string("a\"b\\c\né😀")),
        ("[1, [], {}]", .array([.number(1), .array([]), .object([:])])),
        (" { \"k\" : [ null , \"v\" ] } ", .object(["k": .array([.null, .string("v")])])),
    ])
    func parsesValidJSON(_ text: String, _ expected: JSONValue) throws {
        #expect(try JSONCodec.parse(text) == expected)
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":}", "01", "1.", "-", "tru", "\"unterminated", "\"\\x\"", "\"\\ud83d\"", "{} {}",
        "{'a':1}", "\"tab\there\"", "[1 2]", "nul",
    ])
    func rejectsInvalidJSON(_ text: String) {
        #expect(throws: JSONCodec.ParseError.self) { try JSONCodec.parse(text) }
    }

    @Test func refusesDeepNesting() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONCodec.ParseError.self) { try JSONCodec.parse(deep) }
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect((try? JSONCodec.parse(fine)) != nil)
    }

    @Test func rejectsInvalidUTF8AndKeepsValidUTF8() throws {
        #expect(throws: JSONCodec.ParseError.self) { try JSONCodec.parse([0x22, 0xFF, 0xFE, 0x22]) }
        // After ASCII: the check is not skipped for a string that starts as ASCII.
        #expect(throws: JSONCodec.ParseError.self) { try JSONCodec.parse([0x22, 0x61, 0x62, 0xC3, 0x22]) }
        #expect(try JSONCodec.parse(Array(#"{"k":"héllo 😀","a":"plain"}"#.utf8)) == ["k": "héllo 😀", "a": "plain"])
    }

    @Test(arguments: [
        JSONValue.object(["z": 1, "a": .array(["x\u{1}y", .null, true]), "m": .object(["q": "\"quoted\"\n"])]),
        .number(3.25), .number(-0.001), .string("€ and 😀"), .array([]),
    ])
    func roundTrips(_ value: JSONValue) throws {
        #expect(try JSONCodec.parse(JSONCodec.serialize(value)) == value)
    }

    @Test func writesSortedKeysIntegersAndEscapes() {
        #expect(JSONCodec.string(["b": 1, "a": "x\u{1}\"", "c": .number(2.5)]) == #"{"a":"x\u0001\"","b":1,"c":2.5}"#)
        #expect(JSONCodec.string(.number(.infinity)) == "null")
        // Each object's members by their keys' UTF-8 bytes, at every depth, each with its own value.
        let nested: JSONValue = ["é": 3, "z": ["y": 1, "x": [["d": true, "c": nil]]], "Z": [], "a": "z"]
        #expect(JSONCodec.string(nested) == #"{"Z":[],"a":"z","z":{"x":[{"c":null,"d":true}],"y":1},"é":3}"#)
    }
}
