import CutoverCore
import Hummingbird
import NIOCore

/// The whole request body: `payloadTooLarge` when it exceeds `limit` bytes, `malformed` when its framing
/// is broken (a bad chunk size, a connection cut mid-body): the client's fault, never a 5xx.
func collectBody(_ request: Request, limit: Int) async throws -> ByteBuffer {
    do {
        return try await request.body.collect(upTo: limit)
    } catch let error as HTTPError where error.status == .contentTooLarge {
        throw CutoverError.payloadTooLarge("request body is larger than \(limit >> 20) MiB")
    } catch is NIOTooManyBytesError {
        throw CutoverError.payloadTooLarge("request body is larger than \(limit >> 20) MiB")
    } catch is CancellationError {
        throw CancellationError()
    } catch {
        throw CutoverError.malformed("the request body could not be read: its HTTP framing is invalid (\(error))")
    }
}

/// Reads a JSON request body field by field, collecting every problem so one 422 lists them all.
struct BodyFields {
    let object: [String: JSONValue]
    private(set) var problems: [FieldProblem] = []

    init(_ object: [String: JSONValue]) { self.object = object }

    /// Reads the body (at most `limit` bytes); an empty body reads as `{}` when `allowEmpty`.
    static func read(
        _ request: Request, limit: Int = APILimits.controlBody, allowEmpty: Bool = false
    ) async throws -> BodyFields {
        let buffer = try await collectBody(request, limit: limit)
        if buffer.readableBytes == 0 {
            if allowEmpty { return BodyFields([:]) }
            throw CutoverError.malformed("request body is empty; expected a JSON object")
        }
        let value: JSONValue
        do {
            value = try JSONCodec.parse(buffer.readableBytesView, exactNumbers: true)
        } catch let error where error.inexactNumberField != nil {
            let field = error.inexactNumberField!.isEmpty ? "body" : error.inexactNumberField!
            throw CutoverError.invalid(
                field, "\(error.reason) (a double cannot hold it; send it as a string to keep it as it is)")
        } catch {
            throw CutoverError.malformed("request body is not valid JSON (\(error))")
        }
        guard let object = value.objectValue else {
            throw CutoverError.invalid("body", "must be a JSON object, not \(value.typeName)")
        }
        return BodyFields(object)
    }

    mutating func fail(_ field: String, _ problem: String) {
        problems.append(FieldProblem(field: field, problem: problem))
    }

    mutating func string(_ key: String, required: Bool = false, rule: ((String) -> String?)? = nil) -> String? {
        guard let value = object[key], !value.isNull else {
            if required { fail(key, "is required") }
            return nil
        }
        guard let text = value.stringValue else {
            fail(key, "must be a string, not \(value.typeName)")
            return nil
        }
        if let problem = Rules.nulProblem(text) ?? rule?(text) {
            fail(key, problem)
            return nil
        }
        return text
    }

    mutating func enumValue<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) -> E?
    where E.RawValue == String {
        guard let text = string(key) else { return nil }
        guard let value = E(rawValue: text) else {
            fail(key, "must be one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        return value
    }

    mutating func metadata(_ key: String) -> [String: JSONValue]? {
        guard let value = object[key], !value.isNull else { return nil }
        guard let metadata = value.objectValue else {
            fail(key, "must be a JSON object, not \(value.typeName)")
            return nil
        }
        if JSONCodec.serialize(.object(metadata)).count > Rules.maxMetadataBytes {
            fail(key, "must be at most 64 KiB of JSON")
            return nil
        }
        return metadata
    }

    /// Throws the collected problems as one 422.
    func check() throws {
        if !problems.isEmpty { throw CutoverError.validation(problems) }
    }
}

/// The query parameters of lists and mutating routes.
struct QueryInput {
    let parameters: [String: String]

    init(_ request: Request) {
        var parameters: [String: String] = [:]
        for (key, value) in request.uri.queryParameters {
            parameters[String(key)] = String(value)
        }
        self.parameters = parameters
    }

    var dryRun: Bool { get throws { try flag("dry_run") } }

    func flag(_ name: String) throws -> Bool {
        switch parameters[name]?.lowercased() {
        case nil, "false", "0": return false
        case "true", "1", "": return true
        default: throw CutoverError.invalid(name, "must be true or false")
        }
    }

    func page(orderable columns: [String]) throws -> Page {
        var problems: [FieldProblem] = []
        var page = Page()
        if let text = parameters["limit"] {
            if let n = Int(text), (1...1000).contains(n) { page.limit = n } else {
                problems.append(.init(field: "limit", problem: "must be an integer from 1 to 1000"))
            }
        }
        if let text = parameters["page_number"] {
            if let n = Int(text), n >= 1, n <= 1_000_000 { page.number = n } else {
                problems.append(.init(field: "page_number", problem: "must be an integer of at least 1"))
            }
        }
        if let column = parameters["order_by"] {
            if columns.contains(column) { page.orderBy = column } else {
                problems.append(.init(field: "order_by", problem: "must be one of \(columns.joined(separator: ", "))"))
            }
        }
        if let text = parameters["order_direction"] {
            if let direction = SortDirection(rawValue: text.lowercased()) { page.direction = direction } else {
                problems.append(.init(field: "order_direction", problem: "must be asc or desc"))
            }
        }
        if !problems.isEmpty { throw CutoverError.validation(problems) }
        return page
    }
}

/// Path parameters as the values they encode: `/agents/name/my%2Dagent` names `my-agent`, and a deployment id
/// with a `:` is found whether the client percent-encodes it or not (the router hands parameters over as
/// sent). A parameter whose escapes do not decode to UTF-8 text without NUL stays as sent: no record has
/// such a name or id, so the route answers 404, and the text never reaches the database.
struct PathParameterDecoding: RouterMiddleware {
    typealias Context = APIRequestContext

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard context.parameters.contains(where: { $0.value.utf8.contains(UInt8(ascii: "%")) }) else {
            return try await next(request, context)
        }
        var context = context
        context.coreContext.parameters = Parameters(
            context.parameters.map { (key: $0.key, value: Self.decoded($0.value).map { Substring($0) } ?? $0.value) })
        return try await next(request, context)
    }

    /// `text` with its `%XX` escapes decoded; nil when an escape is malformed or the bytes are not UTF-8
    /// text without NUL.
    static func decoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var input = text.utf8.makeIterator()
        while let byte = input.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = input.next().flatMap(hexValue), let low = input.next().flatMap(hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        guard !bytes.contains(0) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
