#!/usr/bin/env bash
# The whole test suite: unit, fixture, scenario and property tests; the CRD
# drift check; offline validation of the generated CRDs against the Kubernetes
# 1.33 API schema; end-to-end tests against real registries (started and
# stopped by the tests themselves); the Helm chart and the kustomize route
# (e2e/chart.sh); a real Prometheus scraping the webhook (e2e/monitoring.sh);
# the container images built offline, pushed, run and given an SBOM (e2e/image.sh).
# Installs what it needs (e2e/install-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash e2e/install-tools.sh

# The hostile-load tests hold 1,000 connections at once.
ulimit -n 8192 2>/dev/null || true

echo "== CRDs are generated from the Rust types (crdgen --check)"
cargo run --quiet --locked -p portcullis-crds --bin crdgen -- --check

echo "== CRDs and the rendered deploy/ manifests validate against the Kubernetes 1.33 schema"
rendered="$(mktemp --suffix=.yaml)"
trap 'rm -f "$rendered"' EXIT
kubectl kustomize deploy > "$rendered"
python3 -m kubernetes_validate --strict -k 1.33 config/crd/*.yaml "$rendered" deploy/extras/*.yaml

echo "== cargo test"
cargo test --workspace --locked

# Seconds per step, printed at the end.
timings=()
step() { local started=$SECONDS; "$@"; timings+=("$(printf '%4d s  %s' $((SECONDS - started)) "$*")"); }

step bash e2e/chart.sh
step bash e2e/monitoring.sh
step bash e2e/image.sh

echo "== time per install/operations step"
printf '   %s\n' "${timings[@]}"
