# sessionhub's container image: hubd, static (CGO_ENABLED=0), alone on an
# empty base (FROM scratch), running as a non-root user.
#
# Real use: the binary is built in a Go image, then copied into the final
# stage (a registry that serves golang:* must be reachable):
#
#   podman build --format docker -t sessionhub \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   (or: docker build -t sessionhub --build-arg VERSION=0.1.0 ... .)
#
# Offline (what .ci/run does: no registry is reachable there): build the
# binary on the host, and let the final stage take it instead:
#
#   CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o hubd ./cmd/hubd
#   podman build --format docker --build-arg BINARY=host -t sessionhub .
#
# Either way the final stage is the same. It listens on :8080 (HUB_ADDR or
# PORT change that), takes every flag as a HUB_* environment variable, and
# checks its own health with `hubd healthcheck` (the image has no curl).
# --format docker keeps the HEALTHCHECK (the OCI format has none).

# Where the final stage takes hubd from: build (the Go image below) or host
# (a hubd in the build context).
ARG BINARY=build
ARG GO_VERSION=1.26

FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
ARG REVISION=""
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/sessionhub/sessionhub/internal/version.Version=${VERSION} -X github.com/sessionhub/sessionhub/internal/version.Revision=${REVISION}" \
      -o /out/hubd ./cmd/hubd \
 && mkdir -p /out/etc/ssl/certs \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/

# A hubd built on the host (CGO_ENABLED=0), from the build context. No CA
# certificates: add them for rediss:// to a Redis with a public CA.
FROM scratch AS host
COPY hubd /out/hubd

FROM ${BINARY} AS binary

FROM scratch
COPY --from=binary /out/ /
# 65532: the conventional "nonroot" id of distroless images; scratch has no
# /etc/passwd, so the id is numeric.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/hubd", "healthcheck"]
ENTRYPOINT ["/hubd"]
