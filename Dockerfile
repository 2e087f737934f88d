# syntax=docker/dockerfile:1
#
# The `cutover` binary on a slim Debian, as user 10001:
#
#   docker build -t cutover:latest .
#   docker run --rm -p 8080:8080 -e CUTOVER_ADMIN_TOKENS=change-me cutover:latest
#
# The Kubernetes manifests (manifests/) run this image with PostgreSQL; see README.md.

# ---- build: the same toolchain as development and CI (Swift 6.3) ----
FROM swift:6.3-bookworm AS build
WORKDIR /src

# Dependencies first, so that this layer is rebuilt only when the manifest or the pins change.
# Package.resolved is not committed (.gitignore): the glob copies it when the checkout has one.
COPY Package.swift Package.resolved* ./
RUN swift package resolve

# SwiftPM checks the directory of every declared target, the test targets' too, so Tests/ is
# needed although only the `cutover` product is built.
COPY Sources ./Sources
COPY Tests ./Tests

# --static-swift-stdlib links the Swift runtime and Foundation into the binary (no libcurl or
# libxml2: Cutover uses neither FoundationNetworking nor FoundationXML; SQLite and BoringSSL are
# compiled in by sqlite-nio and swift-nio-ssl), so the runtime stage needs only glibc, libstdc++,
# libgcc and zlib, all in debian:bookworm-slim. `-Xlinker -S` drops the debug info (203 MB -> 124
# MB) but keeps the symbols, so the static backtracer still names the functions of a crash.
RUN swift build -c release --product cutover --static-swift-stdlib -Xlinker -S \
    && mkdir -p /out \
    && cp .build/release/cutover /out/cutover \
    && cp /usr/libexec/swift/linux/swift-backtrace-static /out/swift-backtrace-static

# ---- runtime ----
FROM debian:bookworm-slim

# ca-certificates: TLS to PostgreSQL (sslmode=require) and to https agent pods.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 cutover \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cutover \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/cutover

COPY --from=build /out/cutover /usr/local/bin/cutover
COPY --from=build /out/swift-backtrace-static /usr/local/libexec/swift-backtrace-static

ENV SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/local/libexec/swift-backtrace-static \
    CUTOVER_LISTEN=0.0.0.0:8080

# The default database URL, sqlite://cutover.sqlite, is relative to the working directory: a plain
# `docker run` keeps its SQLite file here. In Kubernetes the root filesystem is read-only and
# CUTOVER_DATABASE_URL names PostgreSQL.
WORKDIR /var/lib/cutover
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cutover"]
CMD ["serve"]
