#!/usr/bin/env bash
# The whole test suite: unit, fixture, scenario and property tests; the CRD
# drift check; offline validation of the generated CRDs against the Kubernetes
# 1.33 API schema. Installs what it needs (kubernetes-validate from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
export PORTCULLIS_FIXTURES="${PORTCULLIS_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
[ -d "$PORTCULLIS_FIXTURES" ] || { echo "test.sh: fixtures not found at $PORTCULLIS_FIXTURES (set PORTCULLIS_FIXTURES)" >&2; exit 1; }

if ! python3 -m kubernetes_validate --version >/dev/null 2>&1; then
  echo "== installing kubernetes-validate (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate>=1.33'
fi

echo "== CRDs are generated from the Rust types (crdgen --check)"
cargo run --quiet --locked -p portcullis-crds --bin crdgen -- --check

echo "== CRDs validate against the Kubernetes 1.33 schema"
python3 -m kubernetes_validate --strict -k 1.33 config/crd/*.yaml

echo "== cargo test"
cargo test --workspace --locked
