import CutoverCore
import Foundation
import Logging

enum Logging {
    /// Installs the process's log handler and returns the root logger.
    static func bootstrap(json: Bool, level: String) -> Logger {
        let level = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, json: json)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "cutover")
    }
}

/// One line per event on stderr: a JSON object with the metadata flattened into fields, or, for people,
/// time, level, label and message followed by the metadata as `key=value` in key order. A line is formatted
/// only when it is logged: Hummingbird gives every request's logger its request id, and swift-log's
/// `StreamLogHandler`, which the text lines came from before, formatted all of a logger's metadata again at
/// each such change, logged or not (0.4 % of the server's CPU under streamed calls; five allocations each).
struct LineLogHandler: LogHandler {
    let label: String
    let json: Bool
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let time = Timestamp.now().rfc3339
        let all = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new })
        var line: [UInt8]
        if json {
            var fields: [String: JSONValue] = [
                "ts": .string(time), "level": .string(event.level.rawValue), "msg": .string("\(event.message)"),
                "logger": .string(label),
            ]
            for (key, value) in all { fields[key] = .string("\(value)") }
            line = JSONCodec.serialize(.object(fields))
        } else {
            var text = "\(time) \(event.level) \(label): \(event.message)"
            for (key, value) in all.sorted(by: { $0.key < $1.key }) { text += " \(key)=\(value)" }
            line = Array(text.utf8)
        }
        line.append(0x0A)
        FileHandle.standardError.write(Data(line))
    }
}
