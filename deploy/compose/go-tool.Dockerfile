# Builds one Go server at a pinned version from its module (the same
# versions the tests use), so the trial needs no image tag that could move.
FROM golang:1.26-bookworm AS build
ARG MODULE
RUN CGO_ENABLED=0 GOBIN=/out go install "${MODULE}" && mkdir -p /empty

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# A named volume mounted here takes this owner: the non-root user can write.
COPY --from=build --chown=65532:65532 /empty /data
USER 65532:65532
