/// The agent's answer to `message/send` as it streams: TaskMessageUpdates (`start`, `delta`, `full`,
/// `done`, each with an `index`) folded into the messages they describe. A pure state machine: each
/// update returns what to write, so the caller stores a message when it first appears and again when it
/// is complete, never per delta.
public struct MessageStream: Sendable {
    public enum Action: Sendable, Equatable {
        /// A message appeared: store it (`done` when it arrived whole).
        case create(index: Int, content: JSONValue, done: Bool)
        /// A stored message is complete: write its final content.
        case complete(index: Int, content: JSONValue)
    }

    private struct Entry: Sendable {
        var content: [String: JSONValue]
        var done = false
    }

    private var entries: [Int: Entry] = [:]
    private var order: [Int] = []

    public init() {}

    /// The messages so far, in the order they appeared.
    public var contents: [JSONValue] { order.compactMap { entries[$0].map { .object($0.content) } } }

    /// Folds one update (the `result` of one line of the agent's answer) in.
    public mutating func consume(_ update: JSONValue) -> [Action] {
        guard let u = update.objectValue, let type = u["type"]?.stringValue else { return [] }
        let index = u["index"].flatMap { if case .number(let n) = $0 { Int(exactly: n) } else { nil } } ?? 0
        let known = entries[index] != nil
        switch type {
        case "start":
            let content = u["content"]?.objectValue ?? ["type": "text", "author": "agent", "content": ""]
            guard !known else { return [] }
            add(index, Entry(content: content))
            return [.create(index: index, content: .object(content), done: false)]
        case "delta":
            var entry = entries[index] ?? Entry(content: ["type": "text", "author": "agent", "content": ""])
            guard !entry.done else { return [] }
            if let delta = u["delta"]?.objectValue, let text = delta["text_delta"]?.stringValue {
                entry.content["content"] = .string((entry.content["content"]?.stringValue ?? "") + text)
            }
            if known {
                entries[index] = entry
                return []
            }
            add(index, entry)
            return [.create(index: index, content: .object(entry.content), done: false)]
        case "full":
            guard let content = u["content"]?.objectValue else { return [] }
            if known {
                guard entries[index]?.done == false else { return [] }
                entries[index] = Entry(content: content, done: true)
                return [.complete(index: index, content: .object(content))]
            }
            add(index, Entry(content: content, done: true))
            return [.create(index: index, content: .object(content), done: true)]
        case "done":
            guard known, var entry = entries[index], !entry.done else { return [] }
            entry.done = true
            entries[index] = entry
            return [.complete(index: index, content: .object(entry.content))]
        default:
            return []
        }
    }

    /// The answer ended: every message not yet complete is complete as it stands.
    public mutating func finish() -> [Action] {
        var actions: [Action] = []
        for index in order where entries[index]?.done == false {
            entries[index]?.done = true
            actions.append(.complete(index: index, content: .object(entries[index]!.content)))
        }
        return actions
    }

    private mutating func add(_ index: Int, _ entry: Entry) {
        entries[index] = entry
        order.append(index)
    }
}
