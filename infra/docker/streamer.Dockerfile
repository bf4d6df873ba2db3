# syntax=docker/dockerfile:1.7
# The streamer's image: built from the workspace root, run as a non-root user on distroless.
#
#   docker buildx build --platform linux/arm64 -f infra/docker/streamer.Dockerfile \
#     -t "$REPO:$TAG" --push .
#
# (linux/amd64 for x86 nodes; the build runs natively on the target platform or under QEMU.)
# BuildKit reads streamer.Dockerfile.dockerignore beside this file, which keeps target/ and
# the virtualenvs out of the build context.

# checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the Deployment's startup, liveness and readiness probes call /health/live and /health/ready, and the distroless image has no client to run a HEALTHCHECK with.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole workspace: cargo needs every member's manifest, and the streamer depends on core
# and proto (whose build script compiles the .proto files with protox; no protoc needed).
COPY . .
# Registry and target directory are cache mounts: rebuilds reuse compiled dependencies. The
# binary is copied out of the cache mount, which does not persist into the image. The
# `release-streamer` profile is the release profile with `panic = "unwind"`: a panic ends one
# task, not the process and every connection it serves (root Cargo.toml).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile release-streamer --locked -p session-streamer --bin streamer \
    && install -D -m 0755 target/release-streamer/streamer /out/streamer

# glibc and CA certificates only (the binary is dynamically linked against the glibc of the
# bookworm builder, which distroless cc-debian12 matches); no shell, no package manager. The
# pod's preStop uses the kubelet's sleep action, so no shell is needed.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="session-streamer" \
      org.opencontainers.image.description="Simulator gRPC streams to SSE and WebSocket clients"
COPY --from=build /out/streamer /usr/local/bin/streamer
# distroless "nonroot" (65532); the Deployment asks for the same user and a read-only root.
USER 65532:65532
ENV SESSION_STREAMER__LISTEN=0.0.0.0:8090
EXPOSE 8090
# Exec form: the streamer is PID 1 and gets SIGTERM itself, which starts its drain.
ENTRYPOINT ["/usr/local/bin/streamer"]
