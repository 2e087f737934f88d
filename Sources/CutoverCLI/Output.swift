import CutoverCore
import Foundation
import Yams

/// How a command prints what the server answered.
public enum OutputFormat: String, CaseIterable, Sendable {
    case table, json, yaml
}

/// Where results go: stdout, flushed per line so a watch piped into another program shows as it happens.
public struct Printer: Sendable {
    public var format: OutputFormat
    public var colour: Bool
    public var now: @Sendable () -> Date

    public init(format: OutputFormat, colour: Bool = Printer.terminalWantsColour(), now: @escaping @Sendable () -> Date = Date.init) {
        self.format = format
        self.colour = colour
        self.now = now
    }

    /// Colour only on a terminal, never with `NO_COLOR` set (to anything) or a dumb terminal.
    public static func terminalWantsColour() -> Bool {
        let environment = ProcessInfo.processInfo.environment
        guard isatty(STDOUT_FILENO) == 1, environment["NO_COLOR"] == nil else { return false }
        return environment["TERM"] != "dumb"
    }

    public func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// The server's own bytes (`-o json`) or the same value as YAML; nil for tables.
    public func raw(_ answer: APIClient.Answer) -> String? {
        switch format {
        case .table: return nil
        case .json:
            let text = String(decoding: answer.bytes, as: UTF8.self)
            return text.hasSuffix("\n") ? String(text.dropLast()) : text
        case .yaml: return YAMLText.render(answer.json)
        }
    }
}

/// An aligned table like kubectl's: a header in capitals, columns at least three spaces apart, the last
/// column unpadded.
public struct Table: Sendable {
    public var columns: [String]
    public var rows: [[Cell]] = []

    public struct Cell: Sendable, ExpressibleByStringLiteral {
        public var text: String
        /// An ANSI colour code, used only when the printer colours.
        public var colour: Int?
        public init(_ text: String, colour: Int? = nil) {
            self.text = text
            self.colour = colour
        }
        public init(stringLiteral value: String) { self.init(value) }
    }

    public init(columns: [String]) { self.columns = columns }

    /// Each column as wide as its widest cell so far.
    public var widths: [Int] {
        var widths = columns.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.text.count) }
        }
        return widths
    }

    public func render(colour: Bool) -> [String] {
        let widths = self.widths
        return [Self.format(columns.map { Cell($0) }, widths: widths, colour: colour)]
            + rows.map { Self.format($0, widths: widths, colour: colour) }
    }

    /// One row at fixed widths: how a watch prints a row under a header already printed (a wider cell
    /// pushes only its own line).
    public static func format(_ cells: [Cell], widths: [Int], colour: Bool) -> String {
            var out = ""
            for (i, cell) in cells.enumerated() {
                let isLast = i == cells.count - 1
                var text = cell.text
                if colour, let code = cell.colour { text = "\u{1B}[\(code)m\(text)\u{1B}[0m" }
                out += text
                if !isLast { out += String(repeating: " ", count: max(0, widths[i] - cell.text.count) + 3) }
            }
            return out
    }
}

/// Relative ages as kubectl prints them: `45s`, `12m`, `5h`, `3d`.
public enum Age {
    public static func describe(_ timestamp: String?, now: Date) -> String {
        guard let timestamp, let date = parse(timestamp) else { return "<unknown>" }
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        if seconds < 120 { return "\(seconds)s" }
        if seconds < 120 * 60 { return "\(seconds / 60)m" }
        if seconds < 48 * 3600 { return "\(seconds / 3600)h" }
        return "\(seconds / 86400)d"
    }

    /// The API's RFC 3339 UTC timestamps (`2026-11-28T23:24:14.643562Z`).
    public static func parse(_ text: String) -> Date? {
        let scalars = Array(text.utf8)
        guard scalars.count >= 20, scalars.last == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? { Int(String(decoding: scalars[range], as: UTF8.self)) }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        var fraction = 0.0
        if scalars[19] == UInt8(ascii: "."), let f = Double("0" + String(decoding: scalars[19..<(scalars.count - 1)], as: UTF8.self)) {
            fraction = f
        }
        return Date(timeIntervalSince1970: Double(timegm(&parts)) + fraction)
    }
}

/// JSON values as YAML, keys sorted, for `-o yaml`.
public enum YAMLText {
    public static func render(_ value: JSONValue) -> String {
        let text = (try? Yams.serialize(node: node(value), sortKeys: true)) ?? ""
        return text.hasSuffix("\n") ? String(text.dropLast()) : text
    }

    /// Yams's own representers quote strings that would read back as something else; numbers are written
    /// here, because Yams writes every double in exponent form (`1.5e+0`).
    private static func node(_ value: JSONValue) -> Node {
        switch value {
        case .null: return (try? NSNull().represented()) ?? Node("null")
        case .bool(let b): return (try? b.represented()) ?? Node(b ? "true" : "false")
        case .number(let n):
            if n.rounded() == n, abs(n) < 1e15 { return Node(String(Int64(n)), Tag(.int)) }
            return Node("\(n)", Tag(.float))
        case .string(let s): return (try? s.represented()) ?? Node(s)
        case .array(let items): return Node(items.map(node))
        case .object(let object): return Node(object.map { (node(.string($0.key)), node($0.value)) })
        }
    }
}
