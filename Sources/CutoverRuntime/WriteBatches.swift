import Synchronization

/// One replica's writes per line (a task, an agent), gathered: one batch of a line's writes runs at a
/// time, and the callers that come meanwhile wait in the order they came, to be written together by the
/// next batch, in that order. It pays where the writes of a line serialize on one row lock anyway, as a
/// task's do: every event and message on a task updates the task's row. Written one statement each, a
/// task's events were bounded by the statement's round trip, and waiting in the database costs more once
/// several wait (each waiter holds a connection and a statement snapshot, and re-reads the row past the
/// versions those snapshots keep). Written as one statement per batch, a busy task's events share the
/// round trip, the row's update and the commit. The row lock still orders writers across replicas.
/// Measured with `event/send` on one task (`hack/bench/rpc`, alternating builds): against four single
/// writes at a time, 1,940–2,240 events/s instead of 1,440–1,580 at 16 callers and 2,440–3,050 instead
/// of 1,810–1,950 at 64, PostgreSQL's CPU per event a third (0.10–0.12 ms instead of 0.31–0.35 at 16).
/// Two batches at a time did no better. On SQLite, whose units of work run one at a time anyway, a batch
/// is one transaction instead of one per call: 2,480–2,560 events/s instead of 2,100–2,140 at 16,
/// Cutover's CPU per event 0.47–0.48 ms instead of 0.58–0.59. A batch of one runs in its caller's task,
/// as a single write did. Registrations of one agent's deployments batch the same way, on the agent's
/// row lock (`ControlPlane.register`).
///
/// A batch is the longest run of waiters, from the first, whose `Key` is the first's, of at most
/// `maxItems` writes and `maxBytes` of their sizes (a larger write goes alone). The first waiter of a
/// batch runs it, with the `run` it gave, and every waiter in it gets its own output; when the batch fails,
/// each gets the error.
///
/// The batching itself is `@inlinable`, so that the modules that use it compile it for their own types:
/// called as generic code across the module boundary, every call looked up the metadata of `Entry`, its
/// arrays and `Result` at run time (a sixth of the generic metadata lookups of a streamed `message/send`).
public final class WriteBatches<Key: Equatable & Sendable, Item: Sendable, Output: Sendable>: Sendable {
    public typealias Run = @Sendable (Key, [Item]) async throws -> [Output]

    @usableFromInline enum Wake: Sendable {
        /// Run this batch, whose first entry is the waiter's own.
        case lead([Entry])
        case done(Result<Output, any Error>)
    }

    @usableFromInline struct Entry: Sendable {
        @usableFromInline var id: UInt64
        @usableFromInline var key: Key
        @usableFromInline var item: Item
        @usableFromInline var size: Int
        @usableFromInline var run: Run
        /// Nil for a caller that runs its batch at once, without waiting.
        @usableFromInline var continuation: CheckedContinuation<Wake, Never>?

        @usableFromInline init(
            id: UInt64, key: Key, item: Item, size: Int, run: @escaping Run, continuation: CheckedContinuation<Wake, Never>? = nil
        ) {
            self.id = id
            self.key = key
            self.item = item
            self.size = size
            self.run = run
            self.continuation = continuation
        }
    }

    @usableFromInline struct State {
        /// The lines with a batch running, each with the callers waiting, first come first.
        @usableFromInline var lines: [String: [Entry]] = [:]
        @usableFromInline var nextId: UInt64 = 0

        @usableFromInline init() {}
    }

    public let maxItems: Int
    public let maxBytes: Int
    @usableFromInline let state = Mutex(State())

    public init(maxItems: Int = 64, maxBytes: Int = 1 << 20) {
        precondition(maxItems > 0)
        self.maxItems = maxItems
        self.maxBytes = maxBytes
    }

    /// Writes `item` on `line` as part of a batch of items of the same `key`; its output. `size` counts
    /// against the batch's `maxBytes`. A caller cancelled while it waits gets `CancellationError` and gives
    /// up its place; once its batch has started, it is written.
    @inlinable public func submit(_ item: Item, on line: String, key: Key, size: Int, run: @escaping Run) async throws -> Output {
        let id = state.withLock { s -> UInt64? in
            if takeFree(line, &s) { return nil }
            s.nextId += 1
            return s.nextId
        }
        guard let id else {
            return try await lead([Entry(id: 0, key: key, item: item, size: size, run: run)], on: line).get()
        }
        let wake = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Wake, Never>) in
                let entry = Entry(id: id, key: key, item: item, size: size, run: run, continuation: continuation)
                let outcome = state.withLock { s -> Wake? in
                    // Cancelled before it queued (the handler below then found nothing to remove): no wait.
                    guard !Task.isCancelled else { return .done(.failure(CancellationError())) }
                    // A batch finished since the look above.
                    if takeFree(line, &s) { return .lead([entry]) }
                    s.lines[line]!.append(entry)
                    return nil
                }
                if let outcome { continuation.resume(returning: outcome) }
            }
        } onCancel: {
            let removed = state.withLock { s -> Entry? in
                guard let index = s.lines[line]?.firstIndex(where: { $0.id == id }) else { return nil }
                return s.lines[line]!.remove(at: index)
            }
            removed?.continuation?.resume(returning: .done(.failure(CancellationError())))
        }
        switch wake {
        case .lead(let batch): return try await lead(batch, on: line).get()
        case .done(let result): return try result.get()
        }
    }

    /// Starts a batch on `line` when none runs; false when the caller must wait.
    @inlinable func takeFree(_ line: String, _ s: inout State) -> Bool {
        guard s.lines[line] == nil else { return false }
        s.lines[line] = []
        return true
    }

    /// Runs `batch` (the caller's entry first), answers the others in it, hands the line to the next batch
    /// of waiters or frees it; the caller's own output.
    @inlinable func lead(_ batch: [Entry], on line: String) async -> Result<Output, any Error> {
        let first = batch[0]
        // A closure, not `\.item`: a key path into a generic type was instantiated at run time on every call,
        // demangling its type arguments (8 % of a streamed call's CPU before its database write).
        let items = batch.map { $0.item }
        let outputs: Result<[Output], any Error>
        if batch.count == 1 {
            do { outputs = .success(try await first.run(first.key, items)) } catch { outputs = .failure(error) }
        } else {
            // Apart from the caller's task: its cancellation (its client gone) must not fail the others' writes.
            outputs = await Task { try await first.run(first.key, items) }.result
        }
        let checked = outputs.flatMap { outputs -> Result<[Output], any Error> in
            outputs.count == items.count ? .success(outputs) : .failure(BatchMismatch(items: items.count, outputs: outputs.count))
        }
        for (index, entry) in batch.enumerated().dropFirst() {
            entry.continuation?.resume(returning: .done(checked.map { $0[index] }))
        }
        let next = state.withLock { s -> [Entry]? in
            guard let waiting = s.lines[line], !waiting.isEmpty else {
                s.lines[line] = nil
                return nil
            }
            let count = batchLength(waiting)
            s.lines[line]!.removeFirst(count)
            return Array(waiting.prefix(count))
        }
        if let next { next[0].continuation?.resume(returning: .lead(next)) }
        return checked.map { $0[0] }
    }

    /// How many of `waiting`, from the first, make the next batch.
    @inlinable func batchLength(_ waiting: [Entry]) -> Int {
        var count = 1
        var bytes = waiting[0].size
        while count < waiting.count, count < maxItems, waiting[count].key == waiting[0].key,
            bytes + waiting[count].size <= maxBytes
        {
            bytes += waiting[count].size
            count += 1
        }
        return count
    }

    public struct BatchMismatch: Error, CustomStringConvertible {
        var items: Int
        var outputs: Int

        @usableFromInline init(items: Int, outputs: Int) {
            self.items = items
            self.outputs = outputs
        }
        public var description: String { "a batch of \(items) writes gave \(outputs) results" }
    }

    /// How many lines have a batch running (tests).
    var busyLines: Int { state.withLock { $0.lines.count } }

    /// How many callers wait on `line` (tests).
    func waiting(on line: String) -> Int { state.withLock { $0.lines[line]?.count ?? 0 } }
}
