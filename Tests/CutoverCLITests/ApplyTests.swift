@testable import CutoverCLI
import CutoverCore
import Testing

@Suite("apply: documents")
struct ApplyDocumentTests {
    @Test func severalDocumentsParseWithTheirFields() throws {
        let docs = try ApplyDocument.parse(
            """
            kind: Deployment
            agent: support-bot
            id: build-4312
            image: registry.example.com/support-bot:4312
            metadata: {commit: 1f3e9c2, branch: main, run: 7}
            production: true
            ---
            kind: Deployment
            agent: support-bot
            image: registry.example.com/support-bot:4313
            """, file: "app.yaml")
        #expect(docs.count == 2)
        #expect(docs[0].id == "build-4312")
        #expect(docs[0].metadata == ["commit": "1f3e9c2", "branch": "main", "run": 7])
        #expect(docs[0].production)
        #expect(docs[1].index == 2)
        #expect(docs[1].id == nil)
        #expect(!docs[1].production)
    }

    @Test func aNumericIdIsText() throws {
        let docs = try ApplyDocument.parse("kind: Deployment\nagent: a\nid: 4312\nimage: a:1\n", file: "f")
        #expect(docs[0].id == "4312")
    }

    /// Each invalid document is named by file, index (from 1) and field.
    @Test(arguments: [
        ("kind: Deployment\nagent: a\n", "f.yaml: document 1: image: required"),
        ("kind: Deployment\nagent: a\nimage: x\nreplicas: 3\n", "f.yaml: document 1: replicas: unknown field"),
        ("kind: Agent\nagent: a\nimage: x\n", "f.yaml: document 1: kind: must be Deployment"),
        ("agent: a\nimage: x\n", "f.yaml: document 1: kind: required"),
        ("kind: Deployment\nagent: a\nimage: x\nid: 'has space'\n", "f.yaml: document 1: id: must match"),
        ("kind: Deployment\nagent: a\nimage: x\nproduction: maybe\n", "f.yaml: document 1: production: must be true or false"),
        ("kind: Deployment\nagent: a\nimage: x\nmetadata: [1, 2]\n", "f.yaml: document 1: metadata: must be a mapping"),
        ("kind: Deployment\nagent: a\nimage: x\n---\nkind: Deployment\nimage: y\n", "f.yaml: document 2: agent: required"),
        ("kind: Deployment\nagent: a\nimage: x\n---\nkind: [\n", "f.yaml: document 2: not valid YAML"),
        ("- 1\n- 2\n", "f.yaml: document 1: document: must be a mapping"),
        ("", "f.yaml: no documents to apply"),
    ])
    func invalidDocumentsNameTheirFileIndexAndField(_ text: String, _ expected: String) {
        #expect {
            _ = try ApplyDocument.parse(text, file: "f.yaml")
        } throws: { error in
            (error as? CLIError)?.message.hasPrefix(expected) == true
        }
    }
}

@Suite("apply: plans")
struct ApplyPlanTests {
    func document(id: String? = "b2", image: String = "bot:2", production: Bool = false) -> ApplyDocument {
        ApplyDocument(file: "f", index: 1, agent: "bot", id: id, image: image, metadata: nil, production: production)
    }

    func deployment(_ id: String, image: String = "bot:2", status: String = "Ready", production: Bool = false, deleted: Bool = false) -> JSONValue {
        [
            "id": .string(id), "docker_image": .string(image), "status": .string(status), "is_production": .bool(production),
            "expires_at": deleted ? "2026-12-01T00:00:00.000000Z" : nil, "status_reason": nil,
        ]
    }

    func steps(_ doc: ApplyDocument, _ deployments: [JSONValue]) throws -> [ApplyPlan.Step] {
        try ApplyPlan.make(doc, agentId: "id-1", agentName: "bot", deployments: deployments).steps
    }

    @Test func aNewDeploymentIsCreatedAndPromotedOnceReady() throws {
        #expect(try steps(document(), []) == [.create])
        #expect(try steps(document(production: true), []) == [.create, .awaitReadyThenPromote(status: "Pending")])
    }

    @Test func anExistingDeploymentIsLeftAloneOrPromoted() throws {
        #expect(try steps(document(), [deployment("b2")]) == [])
        #expect(try steps(document(production: true), [deployment("b2", production: true)]) == [])
        #expect(try steps(document(production: true), [deployment("b2")]) == [.promote])
        #expect(try steps(document(production: true), [deployment("b2", status: "Pending")]) == [.awaitReadyThenPromote(status: "Pending")])
        #expect(try steps(document(production: false), [deployment("b2", production: true)]) == [], "production: false never demotes")
    }

    @Test func aSoftDeletedDeploymentIsRestored() throws {
        #expect(try steps(document(), [deployment("b2", deleted: true)]) == [.restore])
        #expect(try steps(document(production: true), [deployment("b2", deleted: true)]) == [.restore, .promote])
    }

    @Test func withoutAnIdTheImageMatchesANonDeletedDeployment() throws {
        let plan = try ApplyPlan.make(
            document(id: nil), agentId: "id-1", agentName: "bot",
            deployments: [deployment("old", image: "bot:1"), deployment("gone", deleted: true), deployment("auto-7")])
        #expect(plan.steps == [])
        #expect(plan.deploymentId == "auto-7")
        #expect(try steps(document(id: nil), [deployment("gone", deleted: true)]) == [.create])
    }

    @Test func anImageNeverChangesAndAFailedDeploymentIsNeverPromoted() {
        #expect { try steps(document(image: "bot:3"), [deployment("b2")]) } throws: { error in
            (error as? CLIError)?.message.hasPrefix("f: document 1: image: deployment b2 exists with image bot:2") == true
        }
        #expect { try steps(document(production: true), [deployment("b2", status: "Failed")]) } throws: { error in
            (error as? CLIError)?.message.hasPrefix("f: document 1: production: deployment b2 is Failed") == true
        }
    }
}
