# trailkeeper: a static binary on a distroless base, run as a non-root user.
# Build: docker build -t trailkeeper:dev --build-arg VERSION=v0.1.0 .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/trailkeeper ./cmd/trailkeeper && mkdir -p /empty

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="trailkeeper" \
      org.opencontainers.image.description="Cloud audit trails to OCSF, NATS JetStream and a tamper-evident archive" \
      org.opencontainers.image.source="https://github.com/trailkeeper/trailkeeper" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/trailkeeper /usr/local/bin/trailkeeper
# The bundled sample data, for trials (docker-compose.yml reads it).
COPY --from=build /src/examples /usr/share/trailkeeper/examples
# A named volume mounted on the data directory takes this owner.
COPY --from=build --chown=65532:65532 /empty /var/lib/trailkeeper
# nonroot is uid 65532; the root filesystem can be read-only: everything
# the daemon writes is under the data directory.
USER 65532:65532
VOLUME ["/var/lib/trailkeeper"]
EXPOSE 9464 4222
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/trailkeeper", "health", "--url", "http://127.0.0.1:9464/healthz"]
ENTRYPOINT ["/usr/local/bin/trailkeeper"]
CMD ["run", "--config", "/etc/trailkeeper/trailkeeper.yaml"]
