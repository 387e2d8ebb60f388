#!/usr/bin/env bash
# Installs what the tests and the demo use, if missing: real registries
# (Debian's docker-registry, ferro-oci-server from crates.io), real clients
# (skopeo, oras-py), htpasswd, kubectl-independent validators. Idempotent.
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
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "== installing ${py_missing[*]} (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "${py_missing[@]}"
fi

if ! command -v ferro-oci-server >/dev/null; then
  echo "== installing ferro-oci-server (crates.io; a referrers-API registry)"
  cargo install --quiet --locked ferro-oci-server --version 1.0.0
fi
