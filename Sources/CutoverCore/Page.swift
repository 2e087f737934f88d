public enum SortDirection: String, Sendable {
    case asc, desc
}

/// A page of a list: `limit` 1–1000, `page_number` ≥ 1, a known `order_by` column.
public struct Page: Sendable, Equatable {
    public var limit: Int
    public var number: Int
    public var orderBy: String
    public var direction: SortDirection

    public init(limit: Int = 50, number: Int = 1, orderBy: String = "created_at", direction: SortDirection = .desc) {
        self.limit = limit
        self.number = number
        self.orderBy = orderBy
        self.direction = direction
    }

    public var offset: Int { (number - 1) * limit }
}
