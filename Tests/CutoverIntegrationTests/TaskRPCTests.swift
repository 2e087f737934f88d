import AsyncHTTPClient
import CutoverCore
import Hummingbird
import NIOCore
import Logging
import PostgresNIO
import CutoverStore
import Synchronization
import Testing

/// The task methods of the `/rpc` routes against a pod that validates and answers like an agentex-sdk pod.
@Suite("Task protocol over RPC")
struct TaskRPCTests {
    func rpc(_ method: String, _ params: JSONValue) -> JSONValue { ["method": .string(method), "params": params] }

    func tasks(_ h: Harness) async throws -> [AgentTask] {
        try await h.store.read { try await $0.listTasks(TaskFilter(), page: Page(limit: 1000, orderBy: "created_at", direction: .asc)) }
    }

    @Test(arguments: Backend.all)
    func anAsyncAgentsTaskLifeCarriesThePlatformEnvelope(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            let agentId = try #require(try await h.register("asyncbot", url: pod.url, deploymentId: "a1")["id"]?.stringValue)
            _ = try await eventually("a1 in production") { try await h.agent(named: "asyncbot")?.productionDeploymentId }

            let created = try await h.request(.POST, "/agents/name/asyncbot/rpc", json: rpc("task/create", ["name": "job-1", "params": ["n": 1]]))
            #expect(created.status == 200, "\(created.text)")
            #expect(created.headers.first(name: "x-cutover-deployment-id") == "a1")
            let task = try #require(created["result"]?.objectValue)
            let taskId = try #require(task["id"]?.stringValue)
            #expect(task["name"] == "job-1")
            #expect(task["status"] == "RUNNING")
            #expect(created["id"] == .null, "the client's id (none) is echoed")

            let envelope = try #require(pod.calls.last)
            #expect(envelope.method == "task/create")
            #expect(envelope.envelope["id"] == .string("task/create-\(taskId)"))
            #expect(envelope.params["agent"]?.objectValue?["id"] == .string(agentId))
            #expect(envelope.params["task"]?.objectValue?["id"] == .string(taskId))
            #expect(envelope.params["params"] == ["n": 1])
            #expect(envelope.headers["x-agent-api-key"] != nil)

            let forwarded = pod.calls.count
            let again = try await h.request(.POST, "/agents/name/asyncbot/rpc", json: rpc("task/create", ["name": "job-1"]))
            #expect(again["result"]?.objectValue?["id"] == .string(taskId), "a task of that name is reused")
            #expect(pod.calls.count == forwarded, "and not created on the pod a second time")

            for n in 1...3 {
                let sent = try await h.request(
                    .POST, "/agents/\(agentId)/rpc",
                    json: ["jsonrpc": "2.0", "id": .number(Double(n)), "method": "event/send",
                           "params": ["task_id": .string(taskId), "content": ["type": "text", "author": "user", "content": .string("hi \(n)")]]])
                #expect(sent.status == 200, "\(sent.text)")
                #expect(sent["id"] == .number(Double(n)))
                #expect(sent["result"]?.objectValue?["sequence_id"] == .number(Double(n)))
                #expect(sent["result"]?.objectValue?["task_id"] == .string(taskId))
                #expect(pod.calls.last?.params["event"]?.objectValue?["sequence_id"] == .number(Double(n)))
            }
            let messages = try await h.get("/messages?task_id=\(taskId)&order_direction=asc")
            #expect(messages.array.compactMap { $0["content"]?.objectValue?["content"]?.stringValue } == ["hi 1", "hi 2", "hi 3"],
                    "what the user says in an event is stored as a message")

            let canceled = try await h.request(.POST, "/agents/\(agentId)/rpc", json: rpc("task/cancel", ["task_name": "job-1"]))
            #expect(canceled["result"]?.objectValue?["status"] == "CANCELED")
            #expect(pod.calls.last?.method == "task/cancel")
            #expect(pod.calls.last?.params["task"]?.objectValue?["status"] == "RUNNING", "the pod sees the task before it is canceled")

            let interrupted = try await h.request(.POST, "/agents/\(agentId)/rpc", json: rpc("task/interrupt", ["task_id": .string(taskId)]))
            #expect(interrupted.status == 502, "a default pod has no task/interrupt handler: \(interrupted.text)")
            #expect(interrupted["error"]?.objectValue?["message"]?.stringValue?.contains("not found") == true)
        }
    }

    @Test(arguments: Backend.all)
    func aSyncAgentAnswersMessagesWholeOrStreamedAndTheyAreStored(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            _ = try await h.register("syncbot", url: pod.url, deploymentId: "s1", acpType: "sync")
            _ = try await eventually("s1 in production") { try await h.agent(named: "syncbot")?.productionDeploymentId }

            let created = try await h.request(.POST, "/agents/name/syncbot/rpc", json: rpc("task/create", ["name": "chat"]))
            #expect(created["result"]?.objectValue?["status"] == "RUNNING")
            #expect(pod.calls.isEmpty, "a sync agent's task/create is the platform's alone")

            let whole = try await h.request(
                .POST, "/agents/name/syncbot/rpc",
                json: rpc("message/send", ["task_name": "chat", "content": ["type": "text", "author": "user", "content": "hello there"]]))
            #expect(whole.status == 200, "\(whole.text)")
            #expect(!whole.text.dropLast().contains("\n"), "one line: the client reads the answer line by line")
            let answer: [JSONValue] = if case .array(let items)? = whole["result"] { items } else { [] }
            #expect(answer.count == 1)
            #expect(answer.first?["content"]?.objectValue?["content"] == "echo: hello there")
            #expect(answer.first?["streaming_status"] == "DONE")
            #expect(pod.calls.last?.params["stream"] == .bool(false))

            let streamed = try await h.request(
                .POST, "/agents/name/syncbot/rpc",
                json: ["id": "req-7", "method": "message/send",
                       "params": ["task_name": "chat", "stream": true, "content": ["type": "text", "author": "user", "content": "one two three"]]])
            #expect(streamed.status == 200)
            #expect(streamed.headers.first(name: "content-type") == "application/x-ndjson")
            let lines = streamed.text.split(separator: "\n").compactMap { try? JSONCodec.parse(String($0)) }
            #expect(lines.count == 5, "three deltas (echo: one two three) and the full message: \(streamed.text)")
            #expect(lines.allSatisfy { $0.objectValue?["id"] == "req-7" })
            #expect(lines.allSatisfy { $0.objectValue?["result"]?.objectValue?["parent_task_message"]?.objectValue?["id"] != nil })

            let taskId = try #require(created["result"]?.objectValue?["id"]?.stringValue)
            let stored = try await h.get("/messages?task_id=\(taskId)&order_direction=asc").array
            #expect(stored.compactMap { $0["content"]?.objectValue?["content"]?.stringValue }
                == ["hello there", "echo: hello there", "one two three", "echo: one two three"])
            #expect(stored.allSatisfy { $0["streaming_status"] == "DONE" })
        }
    }

    /// A client that leaves in the middle of a streamed answer: what the agent said so far is stored, and
    /// stored complete, as when the stream ends.
    @Test(arguments: Backend.all)
    func aStreamTheClientLeavesKeepsWhatWasSaid(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start(wordGap: .milliseconds(400))
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            _ = try await h.register("talker", url: pod.url, deploymentId: "t1", acpType: "sync")
            _ = try await eventually("t1 in production") { try await h.agent(named: "talker")?.productionDeploymentId }
            let created = try await h.request(.POST, "/agents/name/talker/rpc", json: rpc("task/create", ["name": "chat"]))
            let taskId = try #require(created["result"]?.objectValue?["id"]?.stringValue)

            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            var request = HTTPClientRequest(url: h.baseURL + "/agents/name/talker/rpc")
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: JSONCodec.serialize(rpc("message/send", [
                "task_id": .string(taskId), "stream": true,
                "content": ["type": "text", "author": "user", "content": "one two three four five six"],
            ]))))
            let response = try await client.execute(request, timeout: .seconds(10))
            var received = ""
            var iterator = response.body.makeAsyncIterator()
            while !received.contains("\n"), let chunk = try await iterator.next() { received += String(buffer: chunk) }
            #expect(received.contains(#""text_delta":"echo:""#), "\(received)")
            try await client.shutdown()  // gone after the first word, four more to come

            let agentMessage = try await eventually(within: .seconds(5), "the agent's message stored complete") { () -> JSONValue? in
                let stored = try await h.get("/messages?task_id=\(taskId)&order_direction=asc").array
                guard stored.count == 2, stored[1]["streaming_status"] == "DONE" else { return nil }
                return stored[1]
            }
            let text = agentMessage["content"]?.objectValue?["content"]?.stringValue ?? ""
            #expect(text.hasPrefix("echo:") && text.count < "echo: one two three four five six".count, "\(text)")
        }
    }

    /// A streamed line does not wait for its message's write, and the stream does not end before the
    /// writes have: another session holds the agent's message while its last line is sent.
    @Test(arguments: Backend.postgresOnly)
    func streamedLinesGoAheadOfTheirWritesAndTheEndWaitsForThem(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start(wordGap: .milliseconds(600))
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            _ = try await h.register("writer", url: pod.url, deploymentId: "w1", acpType: "sync")
            _ = try await eventually("w1 in production") { try await h.agent(named: "writer")?.productionDeploymentId }
            let created = try await h.request(.POST, "/agents/name/writer/rpc", json: rpc("task/create", ["name": "chat"]))
            let taskId = try #require(created["result"]?.objectValue?["id"]?.stringValue)
            let logger = Logger(label: "test")
            let session = try await PostgresConnection.connect(
                configuration: try #require(h.store.postgresConfiguration), id: 98, logger: logger)
            defer { Task { try? await session.close() } }

            var request = HTTPClientRequest(url: h.baseURL + "/agents/name/writer/rpc")
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: JSONCodec.serialize(rpc("message/send", [
                "task_id": .string(taskId), "stream": true,
                "content": ["type": "text", "author": "user", "content": "one two three four"],
            ]))))
            let response = try await Harness.http.execute(request, timeout: .seconds(10))
            final class Received: Sendable {
                let text = Mutex("")
                let ended = Mutex(false)
            }
            let received = Received()
            let reader = Task {
                for try await chunk in response.body { received.text.withLock { $0 += String(buffer: chunk) } }
                received.ended.withLock { $0 = true }
            }
            defer { reader.cancel() }
            func seen(_ what: String) async throws {
                _ = try await eventually(within: .seconds(10), what) { received.text.withLock { $0.contains(what) } ? true : nil }
            }
            try await seen("\n")
            // The first line announced the agent's message: once it is stored (words come 0.6 s apart), hold it.
            let messageId = try await eventually("the agent's message stored") { () -> String? in
                let stored = try await h.get("/messages?task_id=\(taskId)&order_direction=asc").array
                return stored.count == 2 ? stored[1]["id"]?.stringValue : nil
            }
            _ = try await session.query("BEGIN", logger: logger).collect()
            _ = try await session.query("SELECT id FROM task_messages WHERE id = \(messageId) FOR UPDATE", logger: logger).collect()
            // The last line comes while its write waits.
            try await seen(#""type":"full""#)
            try await Task.sleep(for: .milliseconds(500))
            #expect(!received.ended.withLock { $0 }, "the stream did not end before its last write")
            _ = try await session.query("COMMIT", logger: logger).collect()
            try await reader.value
            let stored = try await h.get("/messages?task_id=\(taskId)&order_direction=asc").array
            #expect(stored.count == 2)
            #expect(stored.last?["streaming_status"] == "DONE")
            #expect(stored.last?["content"]?.objectValue?["content"] == "echo: one two three four")
        }
    }

    @Test(arguments: Backend.all)
    func badTaskCallsAreRefusedBeforeAnythingIsWrittenOrForwarded(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            _ = try await h.register("strictbot", url: pod.url, deploymentId: "x1")
            _ = try await eventually("x1 in production") { try await h.agent(named: "strictbot")?.productionDeploymentId }
            let before = try await h.snapshot()
            let both = try await h.request(
                .POST, "/agents/name/strictbot/rpc", json: ["id": 3, "method": "event/send", "params": ["task_id": "a", "task_name": "b"]])
            #expect(both.status == 400)
            #expect(both["error"]?.objectValue?["code"] == .number(-32602))
            #expect(both["id"] == .number(3))
            let unknown = try await h.request(.POST, "/agents/name/strictbot/rpc", json: rpc("event/send", ["task_id": "no-such-task"]))
            #expect(unknown.status == 404)
            #expect(unknown["error"]?.objectValue?["code"] == .number(-32004))
            #expect(unknown["error"]?.objectValue?["message"]?.stringValue?.contains("no-such-task") == true)
            let inexact = try await h.request(
                .POST, "/agents/name/strictbot/rpc",
                raw: #"{"id":4,"method":"task/create","params":{"name":"big","params":{"n":9007199254740993}}}"#)
            #expect(inexact.status == 400, "\(inexact.text)")
            #expect(inexact["error"]?.objectValue?["code"] == .number(-32602))
            #expect(inexact["error"]?.objectValue?["message"]?.stringValue?.hasPrefix("params: the number 9007199254740993") == true, "\(inexact.text)")
            #expect(inexact["id"] == .number(4))
            let huge = try await h.request(
                .POST, "/agents/name/strictbot/rpc",
                json: rpc("task/create", ["params": ["blob": .string(String(repeating: "x", count: 70 * 1024))]]))
            #expect(huge.status == 400)
            #expect(huge["error"]?.objectValue?["message"]?.stringValue?.contains("params.params is larger than 64 KiB") == true)
            #expect(pod.calls.isEmpty, "nothing reached the pod")
            #expect(try await tasks(h).isEmpty, "no task was written")
            #expect(try await h.snapshot() == before)
        }
    }

    @Test(arguments: Backend.all)
    func aTaskFollowsItsDeploymentAcrossAPromotionAndMovesWhenItIsGone(_ backend: Backend) async throws {
        let blue = try await SDKPodStandIn.start()
        let green = try await SDKPodStandIn.start()
        defer { Task { await blue.stop(); await green.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            let agentId = try #require(try await h.register("sticky", url: blue.url, deploymentId: "blue")["id"]?.stringValue)
            _ = try await eventually("blue in production") { try await h.agent(named: "sticky")?.productionDeploymentId }
            _ = try await h.register("sticky", url: green.url, deploymentId: "green")
            _ = try await h.waitFor(agentId, "green", .ready)

            let old = try await h.request(.POST, "/agents/\(agentId)/rpc", json: rpc("task/create", ["name": "long-job"]))
            let oldId = try #require(old["result"]?.objectValue?["id"]?.stringValue)
            #expect(try await h.post("/agents/\(agentId)/deployments/green/promote").status == 200)

            let event: JSONValue = rpc("event/send", ["task_id": .string(oldId), "content": ["type": "text", "author": "user", "content": "next"]])
            let followed = try await h.request(.POST, "/agents/\(agentId)/rpc", json: event)
            #expect(followed.headers.first(name: "x-cutover-deployment-id") == "blue", "the task stays on the build that began it")
            #expect(blue.calls.last?.method == "event/send")
            let fresh = try await h.request(.POST, "/agents/\(agentId)/rpc", json: rpc("task/create", ["name": "new-job"]))
            #expect(fresh.headers.first(name: "x-cutover-deployment-id") == "green", "new tasks go to production")

            #expect(try await h.delete("/agents/\(agentId)/deployments/blue").status == 200)
            let moved = try await h.request(.POST, "/agents/\(agentId)/rpc", json: event)
            #expect(moved.status == 200, "\(moved.text)")
            #expect(moved.headers.first(name: "x-cutover-deployment-id") == "green", "its owner is gone: it moves to the current route")
            let task = try #require(try await h.store.read { try await $0.task(id: oldId) })
            #expect(task.deploymentId == "green")
            let trail = try await h.get("/agents/\(agentId)/events").array
            let movedEvents = trail.filter { $0["type"] == "TaskMoved" }
            #expect(movedEvents.count == 1)
            #expect(movedEvents.first?["deployment_id"] == "green")
            #expect(movedEvents.first?["message"]?.stringValue?.contains("blue") == true)
        }
    }

    @Test(arguments: Backend.all)
    func aDeploymentShowsItsRunningTasksAndRetentionHoldsItWhileOneIsActive(_ backend: Backend) async throws {
        let blue = try await SDKPodStandIn.start()
        let green = try await SDKPodStandIn.start()
        defer { Task { await blue.stop(); await green.stop() } }
        // No previous production is kept: only the task drain holds blue.
        let retention = RetentionPolicy(retainPreviousProduction: 0, retainInactive: 0, deletionGrace: .seconds(3600), taskDrain: .seconds(3600))
        try await Harness.with(backend, .init(policy: .init(probe: .none), retention: retention)) { h in
            let agentId = try #require(try await h.register("drained", url: blue.url, deploymentId: "blue")["id"]?.stringValue)
            _ = try await eventually("blue in production") { try await h.agent(named: "drained")?.productionDeploymentId }
            _ = try await h.register("drained", url: green.url, deploymentId: "green")
            _ = try await h.waitFor(agentId, "green", .ready)
            let created = try await h.request(.POST, "/agents/\(agentId)/rpc", json: rpc("task/create", ["name": "long"]))
            let taskId = try #require(created["result"]?.objectValue?["id"]?.stringValue)
            #expect(try await h.get("/agents/\(agentId)/deployments/blue")["running_tasks"] == 1)
            #expect(try await h.get("/agents/\(agentId)/deployments/green")["running_tasks"] == 0)
            #expect(try await h.post("/agents/\(agentId)/deployments/green/promote").status == 200)

            _ = try await h.retention.reconciler.reconcile(agentId)
            let held = try #require(try await h.deployment(agentId, "blue"))
            #expect(held.expiresAt == nil, "blue owns a running task: retention holds it")

            let done = try await h.request(.POST, "/tasks/\(taskId)/complete", json: [:])
            #expect(done.status == 200, "\(done.text)")
            #expect(try await h.get("/agents/\(agentId)/deployments/blue")["running_tasks"] == 0)
            _ = try await h.retention.reconciler.reconcile(agentId)
            #expect(try await h.deployment(agentId, "blue")?.expiresAt != nil, "its task is done: blue expires")
        }
    }

    @Test(arguments: Backend.all)
    func aTaskNameIsOneAgentsAndAFailedTurnFailsTheTask(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            _ = try await h.register("first", url: pod.url, deploymentId: "f1", acpType: "sync")
            _ = try await h.register("second", url: pod.url, deploymentId: "s1", acpType: "sync")
            _ = try await eventually("first in production") { try await h.agent(named: "first")?.productionDeploymentId }
            _ = try await eventually("second in production") { try await h.agent(named: "second")?.productionDeploymentId }
            #expect(try await h.request(.POST, "/agents/name/first/rpc", json: rpc("task/create", ["name": "shared"])).status == 200)
            let taken = try await h.request(.POST, "/agents/name/second/rpc", json: rpc("task/create", ["name": "shared"]))
            #expect(taken.status == 409, "\(taken.text)")
            #expect(taken["error"]?.objectValue?["message"]?.stringValue?.contains("another agent") == true)

            // The pod goes away mid-conversation: the turn fails, and so does the task.
            await pod.stop()
            let broken = try await h.request(
                .POST, "/agents/name/first/rpc",
                json: rpc("message/send", ["task_name": "shared", "content": ["type": "text", "author": "user", "content": "again"]]))
            #expect(broken.status == 502)
            let task = try #require(try await h.store.read { try await $0.task(name: "shared") })
            #expect(task.status == .failed)
            #expect(task.statusReason?.contains("unreachable") == true, "\(task.statusReason ?? "")")
        }
    }

    @Test(arguments: Backend.all)
    func anAnswerThatIsNoJSONRPCResponseFailsTheCall(_ backend: Backend) async throws {
        let router = Router()
        router.get("/healthz") { _, _ in "ok" }
        router.post("/api") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            let params = (try? JSONCodec.parse(body.readableBytesView))?["params"]
            let shape = (params?["params"]?["shape"] ?? params?["content"]?["shape"])?.stringValue
            if shape == "http-500" { return Response(status: .internalServerError) }
            let text = shape == "empty" ? "" : #"{"status":"healthy"}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        let pod = try await RunningServer.start(router: router)
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            _ = try await h.register("odd", url: "http://127.0.0.1:\(pod.port)", deploymentId: "o1")
            _ = try await eventually("o1 in production") { try await h.agent(named: "odd")?.productionDeploymentId }
            for shape in ["empty", "not-json-rpc"] {
                let reply = try await h.request(
                    .POST, "/agents/name/odd/rpc", json: rpc("task/create", ["name": .string(shape), "params": ["shape": .string(shape)]]))
                #expect(reply.status == 502, "\(shape): \(reply.text)")
                #expect(reply["error"]?.objectValue?["code"] == .number(-32003))
                let task = try #require(try await h.store.read { try await $0.task(name: shape) })
                #expect(task.status == .failed, "\(shape)")
            }
            // A streamed turn the agent answers with an HTTP error is a 502 too, not an empty 200 stream.
            _ = try await h.register("odd-sync", url: "http://127.0.0.1:\(pod.port)", deploymentId: "os1", acpType: "sync")
            _ = try await eventually("os1 in production") { try await h.agent(named: "odd-sync")?.productionDeploymentId }
            let streamed = try await h.request(
                .POST, "/agents/name/odd-sync/rpc",
                json: rpc("message/send", ["task_name": "http-500", "stream": true,
                                           "content": ["type": "text", "author": "user", "content": "hi", "shape": "http-500"]]))
            #expect(streamed.status == 502, "\(streamed.text)")
            #expect(streamed["error"]?.objectValue?["message"]?.stringValue?.contains("HTTP 500") == true)
            #expect(try await h.store.read { try await $0.task(name: "http-500") }?.status == .failed)
        }
    }

    @Test(arguments: Backend.all)
    func withAffinityOffATaskFollowsProduction(_ backend: Backend) async throws {
        let blue = try await SDKPodStandIn.start()
        let green = try await SDKPodStandIn.start()
        defer { Task { await blue.stop(); await green.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none), taskAffinity: false)) { h in
            let agentId = try #require(try await h.register("loose", url: blue.url, deploymentId: "blue")["id"]?.stringValue)
            _ = try await eventually("blue in production") { try await h.agent(named: "loose")?.productionDeploymentId }
            _ = try await h.register("loose", url: green.url, deploymentId: "green")
            _ = try await h.waitFor(agentId, "green", .ready)
            let created = try await h.request(.POST, "/agents/\(agentId)/rpc", json: rpc("task/create", ["name": "job"]))
            let taskId = try #require(created["result"]?.objectValue?["id"]?.stringValue)
            #expect(try await h.post("/agents/\(agentId)/deployments/green/promote").status == 200)
            let sent = try await h.request(.POST, "/agents/\(agentId)/rpc", json: rpc("event/send", ["task_id": .string(taskId)]))
            #expect(sent.headers.first(name: "x-cutover-deployment-id") == "green")
            let task = try #require(try await h.store.read { try await $0.task(id: taskId) })
            #expect(task.deploymentId == "green", "the task's owner follows, so the drain no longer holds blue")
        }
    }

    /// On PostgreSQL these calls are one statement each and take no agent lock; on either backend a storm of
    /// them on one agent leaves every counter and record exact.
    @Test(arguments: Backend.all)
    func concurrentEventsAndCreatesOnOneAgentStayExact(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            let agentId = try #require(try await h.register("storm", url: pod.url, deploymentId: "s1")["id"]?.stringValue)
            _ = try await eventually("s1 in production") { try await h.agent(named: "storm")?.productionDeploymentId }
            let created = try await h.request(.POST, "/agents/\(agentId)/rpc", json: rpc("task/create", [:]))
            let taskId = try #require(created["result"]?.objectValue?["id"]?.stringValue)
            let events = 40, creates = 20
            let answers = try await withThrowingTaskGroup(of: (String, Int, JSONValue).self) { group in
                for n in 1...events {
                    group.addTask {
                        let sent = try await h.request(.POST, "/agents/\(agentId)/rpc", json: self.rpc("event/send", [
                            "task_id": .string(taskId), "content": ["type": "text", "author": "user", "content": .string("m\(n)")],
                        ]))
                        return ("event", sent.status, sent["result"] ?? .null)
                    }
                }
                for _ in 1...creates {
                    group.addTask {
                        let made = try await h.request(.POST, "/agents/\(agentId)/rpc", json: self.rpc("task/create", [:]))
                        return ("create", made.status, made["result"] ?? .null)
                    }
                }
                var all: [(String, Int, JSONValue)] = []
                for try await answer in group { all.append(answer) }
                return all
            }
            #expect(answers.allSatisfy { $0.1 == 200 }, "\(answers.filter { $0.1 != 200 })")
            let sequences = answers.filter { $0.0 == "event" }.compactMap { answer -> Double? in
                if case .number(let n)? = answer.2.objectValue?["sequence_id"] { n } else { nil }
            }
            #expect(sequences.sorted() == (1...events).map(Double.init), "every event/send got its own sequence id")
            let stored = try await h.store.read { try await $0.taskEvents(taskId: taskId, agentId: nil, afterSequence: 0, limit: 1000) }
            #expect(stored.map(\.sequenceId) == (1...Int64(events)).map { $0 })
            // Each caller was answered with its own event as stored (calls on one task are written in
            // batches on PostgreSQL), and the user's messages are stored in the events' order.
            let answered = Dictionary(uniqueKeysWithValues: answers.filter { $0.0 == "event" }.compactMap { answer in
                answer.2.objectValue?["id"]?.stringValue.map { ($0, answer.2) }
            })
            for event in stored {
                #expect(answered[event.id]?.objectValue?["sequence_id"] == .number(Double(event.sequenceId)), "\(event.id)")
                #expect(answered[event.id]?.objectValue?["content"] == event.content, "\(event.id)")
            }
            let messages = try await h.store.read { try await $0.taskMessages(taskId: taskId) }
            #expect(messages.map(\.content) == stored.map { $0.content ?? .null })
            let newIds = Set(answers.filter { $0.0 == "create" }.compactMap { $0.2.objectValue?["id"]?.stringValue })
            #expect(newIds.count == creates)
            let all = try await tasks(h)
            #expect(all.count == creates + 1)
            #expect(all.allSatisfy { $0.status == .running && $0.deploymentId == "s1" })
            let trackers = try await h.store.read {
                try await $0.listTaskTrackers(agentId: agentId, taskId: nil, page: Page(limit: 1000, orderBy: "seq", direction: .asc))
            }
            #expect(Set(trackers.map(\.taskId)) == Set(all.map(\.id)), "each task has its tracker")
            #expect(pod.calls.filter { $0.method == "event/send" }.count == events)
        }
    }
}
