# The StreamHouse agent and console, built from this repository.
#   docker build -t streamhouse .
#   docker run streamhouse --help                         (the agent)
#   docker run -it --entrypoint streamhouse-tui streamhouse --attach HOST:PORT
FROM rust:1-bookworm AS build
WORKDIR /src
# aws-lc-rs (TLS) builds C with cmake.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p streamhouse-agent -p streamhouse-tui

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/streamhouse streamhouse \
    && mkdir -p /var/lib/streamhouse && chown streamhouse /var/lib/streamhouse
COPY --from=build /src/target/release/streamhouse-agent /src/target/release/streamhouse-tui /usr/local/bin/
USER streamhouse
WORKDIR /var/lib/streamhouse
# gRPC, then Prometheus metrics.
EXPOSE 9660 9090
ENTRYPOINT ["streamhouse-agent"]
