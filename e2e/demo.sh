#!/usr/bin/env bash
# Local demo: sample policies judge workloads whose images carry real scanner
# outputs; prints a decision table. Needs only a Rust toolchain (cargo).
set -euo pipefail
cd "$(dirname "$0")/.."
export PORTCULLIS_FIXTURES="${PORTCULLIS_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
exec cargo run --quiet --locked -p portcullis-webhook --example demo
