# syntax=docker/dockerfile:1.7
# Container images of portcullis-webhook and portcullis-operator.
#
#   docker buildx build --target webhook  -t portcullis-webhook  .
#   docker buildx build --target operator -t portcullis-operator .
#   (multi-arch: --platform linux/amd64,linux/arm64; the release workflow,
#   .github/workflows/release.yaml, builds, signs and publishes both.)
#
# The binaries are built on the build machine's architecture and
# cross-compiled for the target (no emulation). The runtime is distroless
# "cc" for Debian 12: glibc 2.36 (what rust:*-bookworm links against),
# libgcc, CA certificates, the nonroot user 65532, no shell, no package
# manager. Everything in it is read-only at run time: the images work with
# readOnlyRootFilesystem (the manifests set it).
#
# No Docker engine runs on the project's CI machine: e2e/image.sh assembles
# equivalent images offline (same layout: Debian 12 runtime files, 65532,
# /usr/local/bin entrypoints, OCI labels) and tests them.

ARG RUST_VERSION=1.95
ARG RUNTIME=gcr.io/distroless/cc-debian12:nonroot

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
# The Rust target and, when it differs from the build machine's, a cross C
# toolchain (ring compiles C and assembly).
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) target=x86_64-unknown-linux-gnu; gcc=x86-64-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-gnu; gcc=aarch64-linux-gnu ;; \
      *) echo "unsupported architecture $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    echo "$target" > /rust-target; \
    if [ "$(dpkg --print-architecture)" != "$TARGETARCH" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "gcc-$gcc" "libc6-dev-$TARGETARCH-cross"; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target add "$target"
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=portcullis-target-${TARGETARCH} \
    set -eux; \
    target="$(cat /rust-target)"; \
    if [ "$(dpkg --print-architecture)" = "$TARGETARCH" ]; then \
      unset CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER CC_x86_64_unknown_linux_gnu \
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER CC_aarch64_unknown_linux_gnu; \
    fi; \
    cargo build --release --locked --target "$target" \
      -p portcullis-webhook -p portcullis-operator --bins; \
    mkdir -p /out; \
    cp "target/$target/release/portcullis-webhook" "target/$target/release/portcullis-operator" /out/; \
    cp LICENSE /out/LICENSE

FROM ${RUNTIME} AS webhook
ARG VERSION=0.1.0
ARG REVISION=unknown
COPY --from=build /out/LICENSE /usr/share/doc/portcullis/LICENSE
COPY --from=build /out/portcullis-webhook /usr/local/bin/portcullis-webhook
# mimalloc (the webhook's allocator) commits arena memory as it is used, not
# eagerly: under hostile load (thousands of lookups at once) the peak stays
# where glibc malloc had it, under a 256 MiB limit.
ENV MIMALLOC_ARENA_EAGER_COMMIT=0
USER 65532:65532
EXPOSE 8443/tcp 9090/tcp
ENTRYPOINT ["/usr/local/bin/portcullis-webhook"]
LABEL org.opencontainers.image.title="portcullis-webhook" \
      org.opencontainers.image.description="Portcullis validating admission webhook: gates images on their vulnerability findings" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.url="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.documentation="https://github.com/portcullis-dev/portcullis/blob/main/docs/runbook.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Portcullis"

FROM ${RUNTIME} AS operator
ARG VERSION=0.1.0
ARG REVISION=unknown
COPY --from=build /out/LICENSE /usr/share/doc/portcullis/LICENSE
COPY --from=build /out/portcullis-operator /usr/local/bin/portcullis-operator
USER 65532:65532
EXPOSE 9091/tcp
ENTRYPOINT ["/usr/local/bin/portcullis-operator"]
LABEL org.opencontainers.image.title="portcullis-operator" \
      org.opencontainers.image.description="Portcullis operator: rule sources, webhook certificates, federated identity" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.url="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.documentation="https://github.com/portcullis-dev/portcullis/blob/main/docs/runbook.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Portcullis"
