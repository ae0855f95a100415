# syntax=docker/dockerfile:1
# cxone-ingest container image: one stateless replica (several behind a load balancer; the Helm
# chart in deploy/helm/cxone-ingest runs it as a StatefulSet).
#   Build: scripts/image-build -t cxone-ingest:<version>   (runs scripts/sbom, then docker build with
#          the build args below; IMAGE_BUILD_DRY_RUN=1 prints the docker command instead)
#   Run:   docker run -e CXONE_INGEST_WEBHOOK_SECRET="$(openssl rand -hex 32)" -p 8080:8080 cxone-ingest:<version>
# Build args (scripts/image-build fills them): VERSION = Cargo.toml's version (checked against it),
# REVISION = the git commit, DIRTY = whether the build inputs differ from it, SOURCE = the
# repository URL. They become the OCI labels and `cxone-ingest --version` (there is no .git in the
# build context, so build.rs takes the commit from CXONE_INGEST_BUILD_COMMIT/_DIRTY).
# The CycloneDX SBOM (scripts/sbom -> sbom/cxone-ingest.cdx.json) and LICENSE are copied to
# /usr/share/doc/cxone-ingest/ in the image.
# Not built in this repository's CI (its machines have no Docker engine); scripts/check-deploy
# lints it with hadolint.
#
# The runtime image works with a read-only root filesystem: the service writes nothing to disk
# (logs go to stdout, dead letters to S3, the config and secrets are read-only mounts), so it
# needs no writable /tmp either. It runs as the numeric user 10001 so that Kubernetes can verify
# runAsNonRoot. No HEALTHCHECK: Kubernetes probes /healthz and /readyz itself.

# Keep in step with the toolchain the project is tested with (Cargo.toml rust-version is the floor).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
ARG VERSION=""
ARG REVISION=unknown
ARG DIRTY=unknown
WORKDIR /src
# .dockerignore lets in only what the build reads (manifest, lock file, build.rs, src, schemas,
# benches, the example config) and what the image ships beside the binary (LICENSE, the SBOM).
COPY . .
# The labels must not lie: VERSION is Cargo.toml's version, and the SBOM is there.
RUN crate="$(sed -n '/^version = "/{s/^version = "\(.*\)"$/\1/p;q;}' Cargo.toml)" \
    && if [ "$VERSION" != "$crate" ]; then \
         echo "build arg VERSION='$VERSION' is not Cargo.toml's version $crate: build with scripts/image-build" >&2; exit 1; \
       fi \
    && if [ ! -s sbom/cxone-ingest.cdx.json ]; then \
         echo "sbom/cxone-ingest.cdx.json is missing: run scripts/sbom first (scripts/image-build does)" >&2; exit 1; \
       fi
# BuildKit caches the crate registry and the target directory between builds; the binary is
# copied out of the cache mount in the same step. librdkafka is built from source by rdkafka
# (needs only the compilers and libssl-dev of this image; no cmake). build.rs stamps the commit
# from the build args (`cxone-ingest --version`, /version, cxone_ingest_build_info).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CXONE_INGEST_BUILD_COMMIT="$REVISION" CXONE_INGEST_BUILD_DIRTY="$DIRTY" \
    cargo build --release --locked --bin cxone-ingest \
    && install -D -m 0755 target/release/cxone-ingest /out/cxone-ingest

FROM debian:bookworm-slim
ARG VERSION=""
ARG REVISION=unknown
ARG SOURCE=""
# OCI annotations: the version is Cargo.toml's (checked above), the license its `license` field.
LABEL org.opencontainers.image.title="cxone-ingest" \
      org.opencontainers.image.description="NICE CXone Data Action webhooks to schema-validated events in Kafka (exactly once) and dead letters in S3" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# Run-time libraries of the binary: libssl3 (librdkafka's TLS), CA certificates (Kafka TLS to
# public CAs such as MSK's, S3, CXone). glibc, libgcc and zlib are in the base image.
# Not pinned to exact Debian versions on purpose (DL3008): bookworm's security updates replace
# them, a pinned version disappears from the mirror and the build breaks; pin the built image by
# digest instead (image.digest in the chart).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cxone \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cxone
COPY --from=build /out/cxone-ingest /usr/local/bin/cxone-ingest
# The license text and the CycloneDX SBOM of the binary's crates, where image scanners and people look.
COPY LICENSE sbom/cxone-ingest.cdx.json /usr/share/doc/cxone-ingest/
# Defaults for a plain `docker run`; the Helm chart mounts its own config over /etc/cxone-ingest.
COPY config/example.toml /etc/cxone-ingest/config.toml
USER 10001:10001
# Listen on all interfaces inside the container; secrets come from the environment or mounted files.
# 8080 is the webhook port (route it through the load balancer); 9464 is the admin listener
# (/metrics, detailed /readyz): for the Prometheus scraper and probes only, never the load balancer.
ENV CXONE_INGEST_LISTEN=0.0.0.0:8080 CXONE_INGEST_ADMIN_LISTEN=0.0.0.0:9464 \
    CXONE_INGEST_CONFIG=/etc/cxone-ingest/config.toml CXONE_INGEST_LOG_FORMAT=json
EXPOSE 8080 9464
ENTRYPOINT ["/usr/local/bin/cxone-ingest"]
CMD ["serve"]
