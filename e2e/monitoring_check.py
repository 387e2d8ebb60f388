#!/usr/bin/env python3
"""A real Prometheus scrapes the real webhook under demo traffic; every
dashboard and alert expression is evaluated through its HTTP API.

1. The demo (target/debug/examples/demo: a real registry, images with
   findings, the webhook with config/samples) runs with PORTCULLIS_DEMO_HOLD,
   so that after its table it keeps replaying its admission requests.
2. Debian's `prometheus` scrapes the webhook every second as job
   portcullis-webhook, with the chart's alerts (files/alerts.yaml) loaded.
3. Every expression of the dashboard ($__rate_interval = 30s) and of the alert
   rules is queried: none may fail. The decision, admission latency and
   registry panels must have data (finite values). The rules must be loaded
   with no evaluation error; PortcullisWebhookDown must stay quiet (the
   webhook is up) while PortcullisOperatorDown is pending (no operator runs
   here), which shows the absent() alerts work against real scrapes.

    python3 e2e/monitoring_check.py        (e2e/monitoring.sh)
"""
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("BIN_DIR", ROOT / "target/debug")) / "examples/demo"
ALERTS = ROOT / "deploy/helm/portcullis/files/alerts.yaml"
DASHBOARD = ROOT / "deploy/helm/portcullis/files/dashboard.json"
RATE_INTERVAL = "30s"
# Panels that must show data under the demo's traffic.
MUST_HAVE_DATA = {
    "Decisions by action and rule",
    "Decisions by reason",
    "Admission requests by decision",
    "Admission latency",
    "Registry p99 latency by registry",
    "Registry requests by registry and status",
    "Cache hit ratio",
    "Policies loaded",
    "Last policy load",
    "Webhook memory",
    "Webhook replicas up",
    "Version",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f"monitoring_check: timed out waiting for {what}")
        time.sleep(0.5)


def dashboard_queries():
    dash = json.loads(DASHBOARD.read_text())
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL)


def alert_queries():
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def main():
    if not DEMO.exists():
        sys.exit(f"{DEMO} is not built: cargo build -p portcullis-webhook --example demo")
    work = Path(tempfile.mkdtemp(prefix="portcullis-monitoring-"))
    hold = work / "hold"
    procs = []
    try:
        print("== the demo, holding: registry, images with findings, the webhook, replayed requests")
        demo_log = open(work / "demo.log", "w")
        demo = subprocess.Popen([str(DEMO)], env={**os.environ, "PORTCULLIS_DEMO_HOLD": str(hold)},
                                stdout=demo_log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(demo)

        def held():
            if demo.poll() is not None:
                sys.exit(f"the demo stopped ({demo.returncode}):\n{(work / 'demo.log').read_text()}")
            return hold.exists() and hold.read_text().strip()

        metrics = wait_for("the demo's webhook", held, 600).split("=", 1)[1]
        print(f"   webhook metrics at {metrics}")

        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "portcullis-webhook", "static_configs": [{"targets": [metrics]}]}],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        print(f"== prometheus {subprocess.run(['prometheus', '--version'], capture_output=True, text=True).stdout.split()[2]} on 127.0.0.1:{port}")
        prom_log = open(work / "prometheus.log", "w")
        prom = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=prom_log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(prom)
        base = f"http://127.0.0.1:{port}/api/v1"

        def api(path, **params):
            url = f"{base}/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    return json.load(r)
            except urllib.error.HTTPError as e:
                return json.load(e)
            except (urllib.error.URLError, ConnectionError):
                if prom.poll() is not None:
                    sys.exit(f"prometheus stopped:\n{(work / 'prometheus.log').read_text()}")
                return None

        def target_up():
            r = api("targets")
            return r and any(t["health"] == "up" for t in r["data"]["activeTargets"])

        wait_for("prometheus to scrape the webhook", target_up, 60)
        # Enough scrapes for the 30s rate windows.
        time.sleep(35)

        def finite(result):
            return [s for s in result if not math.isnan(float(s["value"][1])) and not math.isinf(float(s["value"][1]))]

        def evaluate():
            errors, empty, counts = [], set(), {}
            for title, expr in list(dashboard_queries()) + list(alert_queries()):
                r = api("query", query=expr)
                if r is None or r.get("status") != "success":
                    errors.append(f"{title}: {expr}\n      {r and (r.get('errorType'), r.get('error'))}")
                    continue
                if r.get("warnings"):
                    errors.append(f"{title}: warnings {r['warnings']}")
                n = len(finite(r["data"]["result"]))
                counts[title] = counts.get(title, 0) + n
            for title in MUST_HAVE_DATA:
                if counts.get(title, 0) == 0:
                    empty.add(title)
            return errors, empty, counts

        # Registry requests come in bursts (cache misses): give the panels a minute.
        deadline = time.monotonic() + 60
        while True:
            errors, empty, counts = evaluate()
            if errors or not empty or time.monotonic() > deadline:
                break
            time.sleep(2)
        n_dash = len(list(dashboard_queries()))
        n_alert = len(list(alert_queries()))
        print(f"== {n_dash} dashboard and {n_alert} alert expressions evaluated")
        for title in sorted(counts):
            print(f"   {counts[title]:3d} series  {title}")
        problems = [f"query failed: {e}" for e in errors] + [f"no data: {t}" for t in sorted(empty)]

        rules = api("rules")["data"]["groups"]
        loaded = {r["name"]: r for g in rules for r in g["rules"]}
        expected = {a for a, _ in alert_queries()}
        if set(loaded) != expected:
            problems.append(f"rules loaded {sorted(loaded)} != {sorted(expected)}")
        for name, r in loaded.items():
            if r.get("health") != "ok":
                problems.append(f"rule {name}: health {r.get('health')} {r.get('lastError')}")
        alerts = {a["labels"]["alertname"]: a["state"] for a in api("alerts")["data"]["alerts"]}
        print(f"== alerts: {alerts or 'none'}")
        if "PortcullisWebhookDown" in alerts:
            problems.append("PortcullisWebhookDown is active although the webhook is scraped")
        if alerts.get("PortcullisOperatorDown") != "pending":
            problems.append("PortcullisOperatorDown should be pending: no operator is scraped here")

        if problems:
            print("\n".join(f"   FAIL: {p}" for p in problems), file=sys.stderr)
            sys.exit(f"monitoring_check: {len(problems)} problem(s); logs in {work}")
        print("monitoring_check: all expressions evaluate, the panels have data")
    finally:
        # Removing the hold file lets the demo stop its webhook and registry
        # itself; whatever is still running after that is stopped here.
        hold.unlink(missing_ok=True)
        for p in reversed(procs):
            if p is procs[0]:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
