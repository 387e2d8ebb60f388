#!/usr/bin/env bash
# The install routes and the alert rules, with the real tools: promtool checks
# and unit-tests the alerts; e2e/deploy_check.py lints, renders and validates
# the Helm chart for its defaults and every ci/ values file, checks what each
# values file promises, compares the chart with the kustomize manifests, and
# tries the rendered flags on the real binaries (built by `cargo build`).
# Tools: e2e/install-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== alerts: promtool check rules, promtool test rules"
promtool check rules deploy/helm/portcullis/files/alerts.yaml
(cd deploy/monitoring && promtool test rules alerts_test.yaml)
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["uid"] == "portcullis-overview" and d["panels"]' \
  deploy/helm/portcullis/files/dashboard.json

echo "== Helm chart and kustomize manifests"
python3 e2e/deploy_check.py
