#!/usr/bin/env bash
# The observability pack against the real thing: Debian's Prometheus scrapes
# the real webhook under the demo's traffic and evaluates every dashboard and
# alert expression (e2e/monitoring_check.py). Needs `cargo build --examples`
# (the test command's cargo test builds the demo); tools: e2e/install-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 e2e/monitoring_check.py
