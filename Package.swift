// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "cutover",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cutover", targets: ["cutover"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/postgres-kit.git", from: "2.17.0"),
        .package(url: "https://github.com/vapor/sqlite-kit.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/sql-kit.git", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        .target(name: "CutoverCore"),
        .target(
            name: "CutoverStore",
            dependencies: [
                "CutoverCore",
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                "CutoverSQLiteSettings",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .target(
            name: "CutoverRuntime",
            dependencies: [
                "CutoverCore",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "CutoverController",
            dependencies: [
                "CutoverCore", "CutoverStore", "CutoverRouting", "CutoverRuntime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "CutoverRouting",
            dependencies: [
                "CutoverCore", "CutoverStore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "CutoverAPI",
            dependencies: [
                "CutoverCore", "CutoverStore", "CutoverController", "CutoverRouting", "CutoverRuntime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            resources: [.embedInCode("openapi.yaml")]
        ),
        .target(
            name: "CutoverCLI",
            dependencies: [
                "CutoverCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "CutoverServer",
            dependencies: [
                "CutoverCore", "CutoverStore", "CutoverController", "CutoverRouting", "CutoverRuntime", "CutoverAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // One C function: the address of Swift concurrency's global enqueue hook, which the executable sets so
        // that async code runs on the event loops (`EventLoopExecutor`).
        .target(name: "CutoverConcurrencyHook"),
        // One C function: SQLite's setting for plans that do not depend on bound values, which Swift cannot
        // reach (`sqlite3_db_config` is variadic).
        .target(name: "CutoverSQLiteSettings"),
        .executableTarget(
            name: "cutover",
            dependencies: [
                "CutoverCore", "CutoverStore", "CutoverController", "CutoverRouting", "CutoverRuntime", "CutoverAPI",
                "CutoverServer", "CutoverCLI", "CutoverConcurrencyHook",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            // Release builds are linked by lld with relative relocations packed (DT_RELR) rather than by
            // gold: the dynamic loader reads a few kilobytes of relocations at start instead of about
            // 2 MB, and read-only data leaves the executable segment. With the Swift runtime linked in
            // (--static-swift-stdlib, as the Dockerfile and the benchmarks build), an idle server's
            // resident memory fell from about 41 MB to 36-38. Such a binary needs glibc 2.36 or later
            // (debian:bookworm, the image's base); debug builds (`swift run`, the tests) keep the default
            // linker, so they still run where glibc is older.
            linkerSettings: [
                .unsafeFlags(
                    ["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
                    .when(platforms: [.linux], configuration: .release)),
            ]
        ),
        .testTarget(name: "CutoverCoreTests", dependencies: ["CutoverCore"]),
        .testTarget(name: "CutoverCLITests", dependencies: ["CutoverCLI", "CutoverCore"]),
        .testTarget(name: "CutoverServerTests", dependencies: ["CutoverCore", "CutoverStore", "CutoverServer"]),
        .testTarget(
            name: "CutoverRuntimeTests",
            dependencies: [
                "CutoverCore", "CutoverRuntime",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "CutoverIntegrationTests",
            dependencies: [
                "CutoverCore", "CutoverStore", "CutoverController", "CutoverRouting", "CutoverRuntime", "CutoverAPI",
                "CutoverServer",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
