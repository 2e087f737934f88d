import CutoverCore
import Foundation
import Logging

enum Logging {
    /// Installs the process's log handler and returns the root logger.
    static func bootstrap(json: Bool, level: String) -> Logger {
        let level = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "cutover")
    }
}

/// One JSON object per line on stderr, metadata flattened into fields.
struct JSONLogHandler: LogHandler {
    let label: String
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: JSONValue] = [
            "ts": .string(Timestamp.now().rfc3339), "level": .string(event.level.rawValue),
            "msg": .string("\(event.message)"), "logger": .string(label),
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) {
            fields[key] = .string("\(value)")
        }
        var line = JSONCodec.serialize(.object(fields))
        line.append(0x0A)
        FileHandle.standardError.write(Data(line))
    }
}
