# syntax=docker/dockerfile:1
# The embedgate gateway image, used by docker-compose.yml with
# BACKEND=triton. Two stages: a Go toolchain builds the binary, a slim
# Debian of the same release runs it (cgo links against its glibc).
# tests: deploy/compose_test.go checks the parts the compose file relies on.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO_ENABLED=1: the onnx backend binds ONNX Runtime through cgo, and one
# binary serves both backends. -trimpath keeps build paths out of the binary.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/embedgate ./gateway/cmd/embedgate

FROM debian:bookworm-slim
# ca-certificates: model files are downloaded from the hub over HTTPS.
# curl: the health checks below and in docker-compose.yml.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# A fixed non-root uid, so volume ownership and runAsNonRoot policies work.
# /data/hf is created owned by it: a new named volume mounted there copies
# that ownership, so the hub cache is writable.
RUN groupadd --system --gid 10001 embedgate \
    && useradd --system --uid 10001 --gid embedgate --home-dir /data --no-create-home --shell /usr/sbin/nologin embedgate \
    && mkdir -p /data/hf \
    && chown -R 10001:10001 /data
COPY --from=build /out/embedgate /usr/local/bin/embedgate

# HOSTNAME is embedgate's listen address (--hostname). Docker sets HOSTNAME
# to the container id unless the image or the run says otherwise, and
# listening only on that address would hide the gateway from localhost.
ENV HOSTNAME=0.0.0.0 \
    PORT=8080 \
    HF_HOME=/data/hf
USER 10001:10001
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/health" || exit 1
ENTRYPOINT ["/usr/local/bin/embedgate"]
