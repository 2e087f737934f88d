import CutoverController
import CutoverCore
import CutoverRouting
import CutoverRuntime
import CutoverStore
import HTTPTypes
import Hummingbird
import Logging

/// What the HTTP layer needs from the rest of Cutover.
public struct APIDependencies: Sendable {
    public var controlPlane: ControlPlane
    public var auth: AuthSettings
    public var allowedHosts: HostAllowlist
    /// Renders `/metrics`; nil when metrics are not exported.
    public var metrics: (@Sendable () async -> String)?
    /// Forwards RPCs; without it the `/rpc` routes are not served.
    public var proxy: RPCProxy?
    /// The replica's route cache (made from the store when not given).
    public var routes: RouteTable?
    /// Whether this replica hears the other replicas' changes; `/readyz` fails while it does not.
    public var hearsChanges: @Sendable () -> Bool = { true }
    /// Whether calls naming an existing task follow the deployment that owns it (while it is Ready).
    public var taskAffinity = true
    /// This replica's batches of writes per task (shared by the copies of these dependencies).
    let taskWrites = WriteBatches<TaskProtocol.WriteKey, StoreTransaction.TaskWrite, StoreTransaction.ContinuedTask?>()

    public init(
        controlPlane: ControlPlane, auth: AuthSettings, allowedHosts: HostAllowlist = .any,
        metrics: (@Sendable () async -> String)? = nil, proxy: RPCProxy? = nil, routes: RouteTable? = nil
    ) {
        self.routes = routes
        self.controlPlane = controlPlane
        self.auth = auth
        self.allowedHosts = allowedHosts
        self.metrics = metrics
        self.proxy = proxy
    }

    var store: any Store { controlPlane.store }
    var authenticator: Authenticator { Authenticator(settings: auth, store: store) }
}

public enum CutoverAPI {
    /// The router with every route of the API and the error envelope around them.
    public static func router(_ deps: APIDependencies) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: ErrorEnvelopeMiddleware(store: deps.store))
        router.add(middleware: PathParameterDecoding())
        OperationsRoutes(deps: deps).register(on: router)
        RegistrationRoutes(deps: deps).register(on: router)
        AgentRoutes(deps: deps).register(on: router)
        DeploymentRoutes(deps: deps).register(on: router)
        TaskRoutes(deps: deps).register(on: router)
        MessageRoutes(deps: deps).register(on: router)
        TaskEventRoutes(deps: deps).register(on: router)
        StateRoutes(deps: deps).register(on: router)
        TrackerRoutes(deps: deps).register(on: router)
        SpanRoutes(deps: deps).register(on: router)
        if let proxy = deps.proxy {
            RPCRoutes(deps: deps, table: deps.routes ?? RouteTable(store: deps.store), proxy: proxy).register(on: router)
        }
        return router
    }
}

/// Renders every error as `{"message", "code", "data"}`.
struct ErrorEnvelopeMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let store: any Store

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as CutoverError {
            return Wire.response(Wire.error(error), status: .init(code: error.status), dryRun: Self.isDryRun(request))
        } catch let error as HTTPError {
            let mapped: CutoverError =
                switch error.status {
                case .notFound: .notFound("no route for \(request.method) \(request.uri.path)")
                case .contentTooLarge: .payloadTooLarge("request body is too large")
                case .badRequest: .malformed(error.body ?? "bad request")
                case .methodNotAllowed: .notFound("\(request.method) is not supported on \(request.uri.path)")
                default: .malformed(error.body ?? error.status.reasonPhrase)
                }
            return Wire.response(Wire.error(mapped), status: .init(code: mapped.status), dryRun: Self.isDryRun(request))
        } catch where store.isUnavailable(error) {
            context.logger.warning("database unavailable", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            let unavailable = CutoverError.unavailable("the database is unreachable; retry shortly")
            return Wire.response(Wire.error(unavailable), status: .serviceUnavailable, dryRun: Self.isDryRun(request))
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            let body: JSONValue = ["message": .string("internal error: \(error)"), "code": 500, "data": nil]
            return Wire.response(body, status: .internalServerError, dryRun: Self.isDryRun(request))
        }
    }

    /// A failed dry run is still a dry run: its answer carries the header like a successful one.
    static func isDryRun(_ request: Request) -> Bool {
        request.method != .get && request.method != .head && ((try? QueryInput(request).dryRun) ?? false)
    }
}
