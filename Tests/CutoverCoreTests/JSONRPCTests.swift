import CutoverCore
import Testing

@Suite("JSON-RPC envelope")
struct JSONRPCTests {
    @Test(arguments: [
        (#"{"method":"task/create","params":{}}"#, "task/create", JSONValue.null),
        (#"{"jsonrpc":"2.0","id":7,"method":"event/send","params":{"x":1}}"#, "event/send", .number(7)),
        (#"{"id":"abc","method":"message/send","params":{}}"#, "message/send", .string("abc")),
        (#"{"id":null,"method":"task/cancel","params":{}}"#, "task/cancel", .null),
    ])
    func acceptsValidRequests(_ text: String, _ method: String, _ id: JSONValue) throws {
        let request = try JSONRPC.validate(try JSONCodec.parse(text))
        #expect(request.method == method)
        #expect(request.id == id)
    }

    @Test(arguments: [
        ("[]", "JSON object"), (#"{"params":{}}"#, "method"), (#"{"method":"","params":{}}"#, "method"),
        (#"{"method":5,"params":{}}"#, "method"), (#"{"method":"m"}"#, "params"), (#"{"method":"m","params":[1]}"#, "params"),
        (#"{"jsonrpc":"1.0","method":"m","params":{}}"#, "jsonrpc"), (#"{"id":[1],"method":"m","params":{}}"#, "id"),
    ])
    func rejectsInvalidEnvelopes(_ text: String, _ fragment: String) throws {
        let body = try JSONCodec.parse(text)
        do {
            _ = try JSONRPC.validate(body)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.code == .invalidRequest)
            #expect(error.httpStatus == 400)
            #expect(error.message.contains(fragment), "\(error.message)")
        }
    }

    @Test(arguments: ACPType.allCases)
    func methodsAllowedPerACPType(_ type: ACPType) throws {
        let allowed = JSONRPC.allowedMethods(type)
        for method in ["message/send", "task/create", "task/cancel", "task/interrupt", "event/send", "other"] {
            let request = try JSONRPC.validate(.object(["method": .string(method), "params": [:]]))
            let data: [String: JSONValue] = ["agent": "a", "deployment": "d"]
            if allowed.contains(method) {
                try JSONRPC.authorize(request, acpType: type, data: data)
            } else {
                do {
                    try JSONRPC.authorize(request, acpType: type, data: data)
                    Issue.record("\(method) allowed for \(type)")
                } catch {
                    #expect(error.code == .methodNotAllowed)
                    #expect(error.message.contains(allowed.joined(separator: ", ")))
                    #expect(error.data == data)
                }
            }
        }
        #expect(JSONRPC.allowedMethods(.sync) == ["message/send", "task/create", "task/interrupt"])
        #expect(JSONRPC.allowedMethods(.agentic) == JSONRPC.allowedMethods(.async))
    }

    @Test func errorBodiesEchoUsableIdsOnly() {
        #expect(JSONRPC.requestId(["id": 3]) == 3)
        #expect(JSONRPC.requestId(["id": "x"]) == "x")
        #expect(JSONRPC.requestId(["id": [1]]) == .null)
        #expect(JSONRPC.requestId(nil) == .null)
        let body = JSONRPC.Failure(.noRoute, 409, "no route", data: ["agent": "a"]).body(id: 3)
        #expect(body == ["jsonrpc": "2.0", "id": 3, "error": ["code": -32001, "message": "no route", "data": ["agent": "a"]]])
    }
}
