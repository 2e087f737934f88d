import CutoverCore
import Yams

/// The API's OpenAPI 3.1 document: `openapi.yaml` beside this file, embedded in the binary and served
/// as JSON by `GET /openapi.json`. Parsed once, on first use.
enum OpenAPIDocument {
    static let document: JSONValue = {
        do {
            return try parse(String(decoding: PackageResources.openapi_yaml, as: UTF8.self))
        } catch {
            // The document ships inside the binary and a test parses it: a broken one never reaches a release.
            preconditionFailure("openapi.yaml is not valid YAML: \(error)")
        }
    }()

    /// The YAML text as JSON. Scalars are typed by YAML's core rules (unquoted booleans, integers, floats
    /// and null); anything else, dates included, stays the string it was written as.
    static func parse(_ yaml: String) throws -> JSONValue {
        guard let root = try Yams.compose(yaml: yaml) else { return .null }
        return try json(root)
    }

    struct Unsupported: Error, CustomStringConvertible {
        var description: String
    }

    private static func json(_ node: Node) throws -> JSONValue {
        switch node {
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard let name = key.scalar?.string else {
                    throw Unsupported(description: "a mapping key that is not a scalar, at \(key.mark.map { "\($0)" } ?? "?")")
                }
                object[name] = try json(value)
            }
            return .object(object)
        case .sequence(let sequence):
            return .array(try sequence.map(json))
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case .int: return node.int.map { .number(Double($0)) } ?? .string(scalar.string)
            case .float:
                guard let value = node.float, value.isFinite else {
                    throw Unsupported(description: "'\(scalar.string)' has no JSON number")
                }
                return .number(value)
            default: return .string(scalar.string)
            }
        case .alias:
            throw Unsupported(description: "an unresolved alias, at \(node.mark.map { "\($0)" } ?? "?")")
        }
    }
}
