# syntax=docker/dockerfile:1
# handoff container image: a static binary (CGO_ENABLED=0; the SQLite driver
# is pure Go) on a distroless base, running as a non-root user. No
# HEALTHCHECK: orchestrators probe /healthz and /readyz.
#
#   docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t handoff:v1.2.3 .

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.buildDate=${BUILD_DATE}" \
      -o /out/handoff ./cmd/handoff \
 && mkdir -p /out/data

# static-debian12 has CA certificates and tzdata (HANDOFF_REVIEW_TIMEZONE) and
# no shell or libc; :nonroot runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="handoff" \
      org.opencontainers.image.description="Hands employees chatting with a Rasa bot in Microsoft Teams to a ServiceNow live agent and back" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/handoffhq/handoff"
COPY --from=build /out/handoff /usr/local/bin/handoff
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
ENV HANDOFF_ADDR=:8080 \
    HANDOFF_DATABASE_URL=sqlite:/data/handoff.db \
    HANDOFF_REVIEW_DIR=/data/review-exports
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/handoff"]
CMD ["serve"]
