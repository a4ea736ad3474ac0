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
COPY relay.yaml /etc/relayd/relay.yaml
WORKDIR /
USER 65532:65532
# 8080: webhooks (public). 9090: metrics, health and admin (keep private;
# bind admin_listen to 0.0.0.0:9090 in the config to scrape from outside).
EXPOSE 8080 9090
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/relayd"]
CMD ["serve", "-c", "/etc/relayd/relay.yaml"]
