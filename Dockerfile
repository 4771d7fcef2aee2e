# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -t zombi .
#   docker run -p 9092:9092 -p 8080:8080 -v zombi-data:/data zombi --kafka-advertised localhost:9092
# The first build compiles RocksDB from source (15+ minutes on 2 cores); the cache mounts keep
# the registry and target dir between builds (BuildKit).
# Debian packages are not pinned to versions (hadolint DL3008): the stable release's security
# updates are wanted, and its versions do not change otherwise.

FROM rust:1-bookworm AS build
# librocksdb-sys runs bindgen, which needs libclang.
# hadolint ignore=DL3008
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends libclang-dev >/dev/null \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the benches, so their sources must be present to build anything.
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin zombi \
 && cp target/release/zombi /usr/local/bin/zombi

FROM debian:bookworm-slim
# ca-certificates: S3 and other HTTPS endpoints are verified against the system's roots.
# hadolint ignore=DL3008
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin zombi \
 && mkdir -p /data \
 && chown zombi:zombi /data
COPY --from=build /usr/local/bin/zombi /usr/local/bin/zombi
LABEL org.opencontainers.image.title="zombi" \
      org.opencontainers.image.description="Kafka wire-compatible broker with object storage tiering and Iceberg tables" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
VOLUME /data
ENV ZOMBI_DATA_DIR=/data \
    ZOMBI_KAFKA_LISTEN=0.0.0.0:9092 \
    ZOMBI_HTTP_LISTEN=0.0.0.0:8080
EXPOSE 9092 8080
# zombi drains connections and stops its background stages on SIGTERM (docker stop).
STOPSIGNAL SIGTERM
# Ready = log recovered, Kafka listener accepting, object store answering (docs/http.md). bash's
# /dev/tcp keeps curl out of the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/zombi"]
