# syntax=docker/dockerfile:1
#
# The orderflow binary in a small image. Every role runs from this one image;
# ORDERFLOW_ROLES picks which (see docker-compose.yml).
#
#   docker build -t orderflow:dev .
#   docker run --rm -p 8080:8080 -e DATABASE_URL=... -e KAFKA_BROKERS=... \
#     -e ORDERFLOW_JWT_SECRET=$(openssl rand -hex 32) orderflow:dev  # serve: every role, behind the gateway on 8080
#   docker run --rm -e DATABASE_URL=... orderflow:dev migrate    # apply migrations and exit
#
# Port 8080 (ORDERFLOW_HTTP_ADDR) is the only one a container serves to
# others: the gateway when it runs the gateway role, else its roles' API.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# The module download is its own layer, so editing code does not refetch it.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# Static binary (no cgo), no local paths or symbol tables in it.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/orderflow ./cmd/orderflow

# Alpine rather than distroless: the compose health checks need a client
# (busybox wget) in the image, and the binary has no health-check subcommand.
FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 10001 orderflow \
    && adduser -S -D -H -u 10001 -G orderflow -s /sbin/nologin orderflow
COPY --from=build /out/orderflow /orderflow
# Numeric, so a runtime can check that it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/orderflow"]
CMD ["serve"]
