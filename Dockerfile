# The image docs/deploy/daemonset.yaml runs: `fdwatch serve` on every node.
#
#   docker build -t fdwatch:0.1.0 .
#
# Stage 1 builds a static binary (x86_64-unknown-linux-musl: no C library to
# match on the node); stage 2 is distroless/static (no shell, no package
# manager: the binary, CA certificates, /etc/passwd), about 2 MB plus
# fdwatch. The BPF objects are committed under src/ and embedded at compile
# time, so the builder needs no clang.

FROM docker.io/library/rust:1.88-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
 && install -m 0755 target/x86_64-unknown-linux-musl/release/fdwatch /fdwatch \
 && /fdwatch --version

FROM gcr.io/distroless/static-debian12
COPY --from=build /fdwatch /usr/local/bin/fdwatch
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/fdwatch/
# Root, as the DaemonSet expects (docs/deploy/README.md: which capabilities
# and why); the DaemonSet drops every capability but the ones it needs.
USER 0
EXPOSE 9779
ENTRYPOINT ["/usr/local/bin/fdwatch"]
CMD ["serve", "--listen=0.0.0.0:9779"]
