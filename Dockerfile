# Herald in a container image.
#
#   docker build -t herald .
#   docker run -d --name herald -p 1883:1883 -p 9464:9464 -v herald-data:/var/lib/herald herald
#
# The build stage compiles with the oldest Rust the workspace supports
# (rust-version in Cargo.toml), so the image build also checks that claim.
# The runtime stage holds the binary, etc/ as /etc/herald, and an
# unprivileged user that owns the data volume /var/lib/herald.

ARG RUST_VERSION=1.88

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald \
    && install -D -m 0755 target/release/herald /out/herald

FROM debian:bookworm-slim
# ca-certificates: the system roots the WebHook trusts for https URLs; not
# pinned, so a rebuild picks up the distribution's current roots.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --home-dir /var/lib/herald \
        --shell /usr/sbin/nologin herald \
    && install -d -o herald -g herald -m 0700 /var/lib/herald
COPY --from=build /out/herald /usr/local/bin/herald
COPY etc/ /etc/herald/
# Environment overrides win over the config file: state in the volume,
# metrics reachable from outside the container (the default is loopback).
ENV HERALD_DATA_DIR=/var/lib/herald \
    HERALD_METRICS__BIND=0.0.0.0:9464
VOLUME ["/var/lib/herald"]
WORKDIR /var/lib/herald
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 1883 9464
# /ready answers 200 once every listener is bound, the data directory is
# writable and the WebHook spool is healthy. bash's /dev/tcp needs no curl.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]"]
ENTRYPOINT ["herald"]
CMD ["--config", "/etc/herald/herald.toml"]
