# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a non-root user.
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq libclang-dev >/dev/null && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin zombi

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data zombi && mkdir -p /data && chown zombi /data
COPY --from=build /src/target/release/zombi /usr/local/bin/zombi
USER zombi
VOLUME /data
ENV ZOMBI_DATA_DIR=/data
EXPOSE 9092 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET /health/ready HTTP/1.0\r\n\r\n" >&3 && grep -q " 200 " <&3'
ENTRYPOINT ["/usr/local/bin/zombi"]
