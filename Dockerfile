# cxone-ingest container image: a stateless replica (several behind a load balancer).
# Build: docker build -t cxone-ingest .   Run: docker run -e CXONE_INGEST_WEBHOOK_SECRET=... cxone-ingest
# (Not built in this repository's CI: its machines have no Docker engine.)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cxone-ingest

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 cxone
COPY --from=build /src/target/release/cxone-ingest /usr/local/bin/cxone-ingest
COPY config/example.toml /etc/cxone-ingest/config.toml
USER cxone
# Listen on all interfaces inside the container; secrets come from the environment or mounted files.
# 8080 is the webhook port (route it through the load balancer); 9464 is the admin listener
# (/metrics, detailed /readyz): for the Prometheus scraper and probes only, never the load balancer.
ENV CXONE_INGEST_LISTEN=0.0.0.0:8080 CXONE_INGEST_ADMIN_LISTEN=0.0.0.0:9464 \
    CXONE_INGEST_CONFIG=/etc/cxone-ingest/config.toml CXONE_INGEST_LOG_FORMAT=json
EXPOSE 8080 9464
ENTRYPOINT ["cxone-ingest"]
CMD ["serve"]
