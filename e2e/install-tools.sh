#!/usr/bin/env bash
# Installs what the tests and the demo use, if missing: real registries
# (Debian's docker-registry, ferro-oci-server from crates.io), real clients
# (skopeo, oras-py), htpasswd, kubectl-independent validators. Idempotent.
set -euo pipefail
demo_only=false; [ "${1:-}" = "--demo" ] && demo_only=true

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
