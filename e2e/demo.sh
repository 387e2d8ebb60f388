#!/usr/bin/env bash
# The local demo: a real registry, sample images with findings, the webhook
# with the sample policies, real admission requests, the decisions printed.
# No cluster needed. Installs what it needs; stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash e2e/install-tools.sh --demo
echo "== building portcullis (first run: a few minutes)"
cargo build --quiet --locked -p portcullis-webhook --bins --example demo
exec target/debug/examples/demo
