#!/usr/bin/env bash
# The container images, offline (no Docker engine here): e2e/image.py
# assembles an OCI image per binary from scratch plus Debian 12's glibc,
# libgcc and CA certificates (umoci), pushes it to a local registry
# (skopeo, Debian's docker-registry), inspects it, unpacks it and runs the
# binaries from its read-only root file system as user 65532, serves the
# webhook from it, and attaches the image's SBOM (syft) as a referrer.
#
# PORTCULLIS_IMAGE_PROFILE=debug (default: the binaries the test command has
# just built, debug info stripped; ~25 s) or release (what ships: adds a
# release build, ~4-5 min cold on 2 cores; .ci/run uses it). The published
# multi-arch images come from the Dockerfile in .github/workflows/release.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
export SYFT_CHECK_FOR_APP_UPDATE=false
python3 e2e/image.py --profile "${PORTCULLIS_IMAGE_PROFILE:-debug}"
