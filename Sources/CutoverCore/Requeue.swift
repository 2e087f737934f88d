/// What a reconcile asks of the controller loop when it returns.
public enum Requeue: Sendable, Equatable {
    /// Nothing more until something changes.
    case done
    /// Look again at this time (a deadline, or now to go again at once), unless a change comes first.
    case at(Timestamp)
    /// Not there yet: try again with the key's growing backoff, but no later than `notAfter`.
    case backoff(notAfter: Timestamp?)
}
