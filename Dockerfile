# One image, two roles (the spec's two containers): `api` runs `heimdall serve`, `worker` runs `heimdall worker`.
# Build: docker build --target api -t heimdall-api .   /   docker build --target worker -t heimdall-worker .
# (docker-compose.yml builds both.) heimdall-http/tests/deploy.rs checks this file against the binary.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p heimdall-http --bin heimdall \
    && install -m 0755 target/release/heimdall /usr/local/bin/heimdall

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/heimdall --create-home heimdall
COPY --from=build /usr/local/bin/heimdall /usr/local/bin/heimdall
USER 10001
WORKDIR /var/lib/heimdall
ENV LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/heimdall"]

FROM runtime AS worker
CMD ["worker"]

FROM runtime AS api
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
CMD ["serve"]
