# Release image for baton: a static-ish release binary on a slim Debian base, run as a
# non-root user. Build: docker build -t baton .
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin baton && strip target/release/baton

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/baton --create-home baton
COPY --from=build /src/target/release/baton /usr/local/bin/baton
USER 10001:10001
WORKDIR /var/lib/baton
ENV BATON_WORKDIR=/var/lib/baton
EXPOSE 8080
ENTRYPOINT ["baton"]
