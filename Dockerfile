# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/relayd ./cmd/relayd \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relayd /usr/local/bin/relayd
COPY --from=build --chown=65532:65532 /out/data /data
# The image's own config: bbolt on /data, admin listener on 0.0.0.0:9090.
COPY deploy/docker/relay.yaml /etc/relayd/relay.yaml
WORKDIR /
USER 65532:65532
# 8080: webhooks (public). 9090: metrics, health and admin; the image's
# config binds it on all interfaces so that it is reachable when published:
# publish it privately (docker run -p 127.0.0.1:9090:9090). A config of your
# own must set server.admin_listen: "0.0.0.0:9090" for the same.
EXPOSE 8080 9090
VOLUME ["/data"]
# distroless has no shell or curl: relayd asks its own /healthz, at the
# admin address of the config it is given.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/relayd", "healthcheck", "-q", "-c", "/etc/relayd/relay.yaml"]
ENTRYPOINT ["/usr/local/bin/relayd"]
CMD ["serve", "-c", "/etc/relayd/relay.yaml"]
