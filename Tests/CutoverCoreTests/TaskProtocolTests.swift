import CutoverCore
import Testing

@Suite("task calls")
struct TaskCallTests {
    @Test func createTakesAnOptionalNameParamsAndMetadata() throws {
        let call = try TaskCall.parse(.create, params: ["name": "t1", "params": ["k": 1], "task_metadata": ["m": "x"]])
        #expect(call.name == "t1")
        #expect(call.params == ["k": 1])
        #expect(call.taskMetadata == ["m": "x"])
        #expect(try TaskCall.parse(.create, params: [:]).name == nil)
    }

    @Test func messageSendNamesItsTaskOrNoneAndNeedsContent() throws {
        let call = try TaskCall.parse(
            .messageSend, params: ["task_name": "chat", "content": ["type": "text", "author": "user", "content": "hi"], "stream": true])
        #expect(call.task == .name("chat"))
        #expect(call.stream)
        #expect(try TaskCall.parse(.messageSend, params: ["content": ["type": "text"]]).task == nil)
    }

    static let invalid: [(TaskMethod, [String: JSONValue], String)] = [
        (.messageSend, ["content": ["type": "text"], "task_id": "a", "task_name": "b"], "not both"),
        (.messageSend, [:], "needs params.content"),
        (.messageSend, ["content": ["author": "user"]], "params.content.type is required"),
        (.messageSend, ["content": ["type": "text"], "stream": "yes"], "params.stream must be true or false"),
        (.eventSend, ["content": ["type": "text"]], "needs params.task_id or params.task_name"),
        (.cancel, [:], "needs params.task_id or params.task_name"),
        (.interrupt, ["task_id": 7], "params.task_id must be a string"),
        (.create, ["name": ""], "params.name must not be empty"),
        (.create, ["params": [1, 2]], "params.params must be an object"),
    ]

    @Test(arguments: invalid)
    func invalidParamsAreRefusedWithMinus32602(_ method: TaskMethod, _ params: [String: JSONValue], _ message: String) {
        #expect {
            _ = try TaskCall.parse(method, params: params)
        } throws: { error in
            guard let failure = error as? JSONRPC.Failure else { return false }
            return failure.code == .invalidParams && failure.httpStatus == 400 && failure.message.contains(message)
        }
    }
}

@Suite("message streams")
struct MessageStreamTests {
    func text(_ s: String) -> JSONValue { ["type": "text", "author": "agent", "content": .string(s)] }

    @Test func deltasAccumulateAndAreWrittenOnlyWhenTheMessageAppearsAndCompletes() {
        var stream = MessageStream()
        #expect(stream.consume(["type": "start", "index": 0, "content": text("")]) == [.create(index: 0, content: text(""), done: false)])
        #expect(stream.consume(["type": "delta", "index": 0, "delta": ["type": "text", "text_delta": "hello"]]) == [])
        #expect(stream.consume(["type": "delta", "index": 0, "delta": ["type": "text", "text_delta": " world"]]) == [])
        #expect(stream.consume(["type": "done", "index": 0]) == [.complete(index: 0, content: text("hello world"))])
        #expect(stream.contents == [text("hello world")])
        #expect(stream.finish() == [])
    }

    @Test func aFullUpdateWinsOverDeltasAndAWholeMessageIsStoredOnce() {
        var stream = MessageStream()
        _ = stream.consume(["type": "delta", "index": 0, "delta": ["type": "text", "text_delta": "draft"]])
        #expect(stream.consume(["type": "full", "index": 0, "content": text("final")]) == [.complete(index: 0, content: text("final"))])
        #expect(stream.consume(["type": "full", "index": 1, "content": text("second")]) == [.create(index: 1, content: text("second"), done: true)])
        #expect(stream.consume(["type": "done", "index": 1]) == [], "already complete")
        #expect(stream.contents == [text("final"), text("second")])
    }

    @Test func anAnswerThatEndsEarlyCompletesWhatItStarted() {
        var stream = MessageStream()
        _ = stream.consume(["type": "delta", "index": 0, "delta": ["type": "text", "text_delta": "cut"]])
        #expect(stream.finish() == [.complete(index: 0, content: text("cut"))])
        #expect(stream.consume(["type": "bogus"]) == [])
        #expect(stream.consume("not an object") == [])
    }
}
