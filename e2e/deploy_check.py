#!/usr/bin/env python3
"""The two install routes, checked with the real tools (e2e/chart.sh runs this).

For the chart's defaults and every values file under deploy/helm/portcullis/ci/:
`helm lint --strict`; `helm template`; the built-in kinds validated by
`kubernetes-validate --strict -k 1.33`; the custom kinds handled explicitly
(PrometheusRule: its rules through `promtool check rules`; ServiceMonitor and
cert-manager's Issuer/Certificate: their fields checked here, as no schema
for them is available offline); behaviour a user relies on asserted per
values file; every flag the chart renders accepted by the real binaries.

Parity: the default render and `kubectl kustomize deploy/` give the same
objects with the same settings (the only difference allowed: the Namespace,
which Helm leaves to `--create-namespace`); the monitoring values and
`kubectl kustomize deploy/monitoring` likewise (those kustomize files are
generated from the chart: `--write-monitoring`).

Also: every values key is documented in the chart README's table.

    python3 e2e/deploy_check.py [--write-monitoring]
Environment: HELM (default: helm on PATH), BIN_DIR (default target/debug).
"""
import copy
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy/helm/portcullis"
MONITORING = ROOT / "deploy/monitoring"
HELM = os.environ.get("HELM", "helm")
BIN_DIR = Path(os.environ.get("BIN_DIR", ROOT / "target/debug"))
K8S_VERSION = "1.33"
NAMESPACE = "portcullis"

# Labels only Helm adds; the kustomize route has no release.
HELM_ONLY_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
# Kinds that are not built into Kubernetes: kubernetes-validate has no schema
# for them, so they are checked here instead (see check_custom).
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
}
# Webhook flags the chart uses that the lead adds on main (issue 10). Until
# they exist in the binary they are reported, not failed; once they exist
# they are checked like every other flag.
PENDING_WEBHOOK_FLAGS = {"--audit-only", "--shutdown-delay", "--cache-max-bytes", "--client-ca"}

failures = []


def fail(msg):
    failures.append(msg)
    print(f"   FAIL: {msg}", file=sys.stderr)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def run(cmd, **kw):
    return subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)


def must(cmd, **kw):
    r = run(cmd, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render(values=None, namespace=NAMESPACE, extra=()):
    cmd = [HELM, "template", "portcullis", str(CHART), "-n", namespace, *extra]
    if values:
        cmd += ["-f", str(values)]
    return must(cmd)


def key(d):
    m = d.get("metadata", {})
    return (d.get("apiVersion"), d.get("kind"), m.get("namespace", ""), m.get("name"))


def normalise(d):
    d = copy.deepcopy(d)
    labels = d.get("metadata", {}).get("labels")
    if labels is not None:
        for k in HELM_ONLY_LABELS:
            labels.pop(k, None)
        if not labels:
            del d["metadata"]["labels"]
    return d


def by_key(objects):
    out = {}
    for d in objects:
        k = key(d)
        if k in out:
            fail(f"duplicate object {k}")
        out[k] = normalise(d)
    return out


def compare(name_a, a, name_b, b):
    ka, kb = set(a), set(b)
    for k in sorted(ka - kb, key=str):
        fail(f"{k} only in {name_a}")
    for k in sorted(kb - ka, key=str):
        fail(f"{k} only in {name_b}")
    for k in sorted(ka & kb, key=str):
        if a[k] != b[k]:
            da = yaml.safe_dump(a[k], sort_keys=True).splitlines()
            db = yaml.safe_dump(b[k], sort_keys=True).splitlines()
            diff = "\n".join(difflib.unified_diff(da, db, name_a, name_b, lineterm="", n=2))
            fail(f"{k} differs:\n{diff}")


def find(objects, kind, name=None):
    for d in objects:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    return None


def container(objects, deployment):
    d = find(objects, "Deployment", deployment)
    return d["spec"]["template"]["spec"]["containers"][0] if d else {}


def args(objects, deployment):
    return container(objects, deployment).get("args", [])


# ---------------------------------------------------------------- validation


def validate(objects, label):
    builtin = [d for d in objects if (d.get("apiVersion"), d.get("kind")) not in CUSTOM_KINDS]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(builtin, f)
        path = f.name
    r = run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", K8S_VERSION, path])
    os.unlink(path)
    if not check(r.returncode == 0, f"{label}: kubernetes-validate --strict -k {K8S_VERSION}:\n{r.stdout}{r.stderr}"):
        return
    check_custom([d for d in objects if (d.get("apiVersion"), d.get("kind")) in CUSTOM_KINDS], label)


def check_custom(objects, label):
    for d in objects:
        kind, name = d["kind"], d["metadata"]["name"]
        spec = d.get("spec", {})
        if kind == "PrometheusRule":
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                yaml.safe_dump(spec, f)
                path = f.name
            r = run(["promtool", "check", "rules", path])
            os.unlink(path)
            check(r.returncode == 0, f"{label}: PrometheusRule {name}: promtool check rules:\n{r.stdout}{r.stderr}")
            check(set(spec) == {"groups"}, f"{label}: PrometheusRule spec has {sorted(spec)}")
        elif kind == "ServiceMonitor":
            eps = spec.get("endpoints", [])
            check(eps and all(e.get("port") == "metrics" for e in eps), f"{label}: ServiceMonitor endpoints {eps}")
            check(spec.get("jobLabel") == "app.kubernetes.io/name", f"{label}: ServiceMonitor jobLabel (the alerts expect job=portcullis-webhook)")
            check(set(spec) <= {"jobLabel", "selector", "namespaceSelector", "endpoints"}, f"{label}: ServiceMonitor fields {sorted(spec)}")
        elif kind == "Issuer":
            check(len(set(spec) & {"selfSigned", "ca"}) == 1, f"{label}: Issuer {name} spec {spec}")
        elif kind == "Certificate":
            check(spec.get("secretName") and spec.get("issuerRef", {}).get("name"), f"{label}: Certificate {name} lacks secretName/issuerRef")
            check(set(spec) <= {"secretName", "duration", "renewBefore", "privateKey", "dnsNames", "issuerRef", "isCA", "commonName"},
                  f"{label}: Certificate {name} fields {sorted(spec)}")


# ---------------------------------------------------------- what users rely on


def excluded_names(vwc):
    names = set()
    for w in vwc["webhooks"]:
        exprs = w["namespaceSelector"]["matchExpressions"]
        name_expr = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name"]
        check(len(name_expr) == 1 and name_expr[0]["operator"] == "NotIn", f"{w['name']}: no NotIn on the namespace name")
        names |= set(name_expr[0]["values"]) if name_expr else set()
    return names


def assert_common(objects, label, namespace=NAMESPACE):
    vwc = find(objects, "ValidatingWebhookConfiguration", "portcullis-webhook")
    if not check(vwc, f"{label}: no ValidatingWebhookConfiguration"):
        return
    names = excluded_names(vwc)
    check({"kube-system", namespace} <= names, f"{label}: kube-system and {namespace} must never be gated, excluded: {names}")
    for w in vwc["webhooks"]:
        svc = w["clientConfig"]["service"]
        check(svc == {"namespace": namespace, "name": "portcullis-webhook", "path": "/validate"}, f"{label}: clientConfig {svc}")
        check(w["sideEffects"] == "NoneOnDryRun", f"{label}: sideEffects")
    for dep in ("portcullis-webhook", "portcullis-operator"):
        d = find(objects, "Deployment", dep)
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        check(pod["securityContext"].get("runAsUser") == 65532 and pod["securityContext"].get("runAsNonRoot"), f"{label}: {dep} not non-root 65532")
        check(c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
              f"{label}: {dep} container securityContext {c['securityContext']}")
    webhook = container(objects, "portcullis-webhook")
    mem = webhook["resources"]["limits"]["memory"]
    cache = [a.split("=", 1)[1] for a in webhook["args"] if a.startswith("--cache-max-bytes=")]
    check(len(cache) == 1, f"{label}: --cache-max-bytes missing")
    if cache and mem.endswith("Mi") and cache[0].endswith("Mi"):
        check(int(mem[:-2]) >= int(cache[0][:-2]) + 64, f"{label}: the cache ({cache[0]}) does not fit the memory limit {mem} with room for the process")
    svc_ports = {d["metadata"]["name"]: d["spec"]["ports"] for d in objects if d["kind"] == "Service"}
    check(svc_ports.get("portcullis-webhook-metrics", [{}])[0].get("port") == 9090, f"{label}: webhook metrics Service")
    check(svc_ports.get("portcullis-operator-metrics", [{}])[0].get("port") == 9091, f"{label}: operator metrics Service")


def rules_of(objects, kind, name):
    d = find(objects, kind, name)
    return d["rules"] if d else []


def grants(rules, resource, verb):
    return any(resource in r.get("resources", []) and verb in r.get("verbs", []) for r in rules)


def assert_default(objects):
    label = "defaults"
    vwc = find(objects, "ValidatingWebhookConfiguration")
    check(all(w["failurePolicy"] == "Fail" for w in vwc["webhooks"]), f"{label}: failurePolicy must default to Fail")
    check(all(w["timeoutSeconds"] == 5 for w in vwc["webhooks"]), f"{label}: timeoutSeconds")
    check(all("objectSelector" not in w and "matchConditions" not in w and len(w["namespaceSelector"]["matchExpressions"]) == 1
              for w in vwc["webhooks"]), f"{label}: label/object/condition exclusions must be off by default")
    check("cert-manager.io/inject-ca-from" not in (vwc["metadata"].get("annotations") or {}), f"{label}: cert-manager annotation")
    a = args(objects, "portcullis-webhook")
    check("--audit-only" not in a, f"{label}: audit-only must be off by default")
    check("--cache-max-bytes=128Mi" in a and "--shutdown-delay=10s" in a and "--deadline=3s" in a, f"{label}: webhook args {a}")
    c = container(objects, "portcullis-webhook")
    check(c["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}, f"{label}: resources {c['resources']}")
    check(c["image"] == "ghcr.io/portcullis-dev/portcullis-webhook:0.1.0", f"{label}: image {c['image']}")
    check(find(objects, "PodDisruptionBudget", "portcullis-webhook"), f"{label}: PDB")
    check("--certificates=operator" in args(objects, "portcullis-operator"), f"{label}: operator certificates")
    check(grants(rules_of(objects, "ClusterRole", "portcullis-webhook"), "secrets", "get"), f"{label}: webhook may read Secrets by default")
    check(grants(rules_of(objects, "ClusterRole", "portcullis-operator"), "validatingwebhookconfigurations", "patch"), f"{label}: operator patches caBundle")
    for kind in ("NetworkPolicy", "ServiceMonitor", "PrometheusRule", "Secret", "Certificate"):
        check(not find(objects, kind), f"{label}: {kind} must be off by default")


def assert_production(objects):
    label = "production-values"
    w, o = container(objects, "portcullis-webhook"), container(objects, "portcullis-operator")
    check(w["image"] == "ghcr.io/portcullis-dev/portcullis-webhook@sha256:" + "0123456789abcdef" * 4, f"{label}: webhook by digest: {w['image']}")
    check(o["image"].endswith("@sha256:" + "fedcba9876543210" * 4) and ":0.1.0-rc.1" not in o["image"], f"{label}: digest wins over tag: {o['image']}")
    a = w["args"]
    check("--cache-max-bytes=512Mi" in a, f"{label}: cache flag {a}")
    check(w["resources"]["limits"]["memory"] == "640Mi" and w["resources"]["requests"]["memory"] == "640Mi", f"{label}: memory from the cache: {w['resources']}")
    check(["--allow-destination=10.20.0.0/16", "--allow-destination=harbor.corp.example:443"] == [x for x in a if x.startswith("--allow-destination")], f"{label}: {a}")
    check("--insecure-registry=registry.build.svc:5000" in a and "--on-registry-unavailable=deny" in a, f"{label}: {a}")
    check("--client-ca=/etc/portcullis/client-ca/ca.crt" in a, f"{label}: client CA flag")
    check({"name": "client-ca", "mountPath": "/etc/portcullis/client-ca", "readOnly": True} in w["volumeMounts"], f"{label}: client CA mount")
    secret = find(objects, "Secret", "portcullis-webhook-client-ca")
    check(secret and "BEGIN CERTIFICATE" in __import__("base64").b64decode(secret["data"]["ca.crt"]).decode(), f"{label}: client CA Secret")
    pod = find(objects, "Deployment", "portcullis-webhook")["spec"]["template"]["spec"]
    check(pod.get("priorityClassName") == "platform-critical", f"{label}: priorityClassName")
    check(all(t["whenUnsatisfiable"] == "DoNotSchedule" for t in pod["topologySpreadConstraints"]), f"{label}: topology spread")
    check(pod.get("imagePullSecrets") == [{"name": "ghcr-pull"}], f"{label}: pull secrets")
    vwc = find(objects, "ValidatingWebhookConfiguration")
    check(excluded_names(vwc) == {"kube-system", NAMESPACE, "gatekeeper-system"}, f"{label}: excluded namespaces")
    check(all(x["timeoutSeconds"] == 10 for x in vwc["webhooks"]), f"{label}: timeoutSeconds")
    np = find(objects, "NetworkPolicy", "portcullis-webhook")
    if check(np, f"{label}: NetworkPolicy"):
        ingress = np["spec"]["ingress"]
        check(ingress[0] == {"ports": [{"protocol": "TCP", "port": 8443}], "from": [{"ipBlock": {"cidr": "172.20.0.0/16"}}]}, f"{label}: webhook ingress {ingress[0]}")
        check(ingress[1]["ports"] == [{"protocol": "TCP", "port": 9090}] and
              ingress[1]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}], f"{label}: metrics ingress {ingress[1]}")
        check(np["spec"]["policyTypes"] == ["Ingress"], f"{label}: egress must stay open")
    dash = find(objects, "ConfigMap", "portcullis-grafana-dashboard")
    check(dash and dash["metadata"]["namespace"] == "monitoring" and dash["metadata"]["labels"].get("grafana_dashboard") == "1", f"{label}: dashboard ConfigMap")
    check(json.loads(dash["data"]["portcullis.json"])["uid"] == "portcullis-overview", f"{label}: dashboard JSON")
    sm = find(objects, "ServiceMonitor")
    check(sm["metadata"]["labels"].get("release") == "kube-prometheus-stack", f"{label}: ServiceMonitor labels")


def assert_audit_first(objects):
    label = "audit-first-values"
    a = args(objects, "portcullis-webhook")
    check("--audit-only" in a and "--shutdown-delay=0s" in a, f"{label}: {a}")
    vwc = find(objects, "ValidatingWebhookConfiguration")
    check(all(w["failurePolicy"] == "Ignore" for w in vwc["webhooks"]), f"{label}: failurePolicy Ignore")
    check(not find(objects, "PodDisruptionBudget"), f"{label}: a PDB with one replica would block node drains")
    c = container(objects, "portcullis-webhook")
    check(c.get("lifecycle") == {"preStop": {"sleep": {"seconds": 15}}}, f"{label}: preStop sleep {c.get('lifecycle')}")
    check("--log-format=text" in args(objects, "portcullis-operator"), f"{label}: operator log format")


def assert_cert_manager(objects, label, own_issuer):
    ns = NAMESPACE
    check("--certificates=cert-manager" in args(objects, "portcullis-operator"), f"{label}: operator flag")
    check(not any(x.startswith("--cert-validity-days") for x in args(objects, "portcullis-operator")), f"{label}: operator cert flags")
    vwc = find(objects, "ValidatingWebhookConfiguration")
    check(vwc["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from") == f"{ns}/portcullis-webhook", f"{label}: inject-ca-from")
    cert = find(objects, "Certificate", "portcullis-webhook")
    if check(cert, f"{label}: Certificate portcullis-webhook"):
        check(cert["spec"]["secretName"] == "portcullis-webhook-tls", f"{label}: the webhook reads portcullis-webhook-tls")
        check(set(cert["spec"]["dnsNames"]) == {"portcullis-webhook", f"portcullis-webhook.{ns}", f"portcullis-webhook.{ns}.svc",
                                               f"portcullis-webhook.{ns}.svc.cluster.local"}, f"{label}: dnsNames")
    issuers = [d["metadata"]["name"] for d in objects if d["kind"] == "Issuer"]
    if own_issuer:
        check(issuers == ["portcullis-selfsigned", "portcullis-ca"], f"{label}: issuers {issuers}")
        check(cert["spec"]["issuerRef"]["name"] == "portcullis-ca", f"{label}: issuerRef")
    else:
        check(issuers == [] and cert["spec"]["issuerRef"] == {"name": "corp-internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
              f"{label}: existing issuer")
    op = rules_of(objects, "ClusterRole", "portcullis-operator")
    check(not grants(op, "validatingwebhookconfigurations", "patch"), f"{label}: the operator needs no caBundle rights")
    role = rules_of(objects, "Role", "portcullis-operator")
    check(not any("portcullis-webhook-tls" in r.get("resourceNames", []) for r in role), f"{label}: the operator needs no TLS Secret rights")


def assert_no_secrets(objects, label):
    rules = rules_of(objects, "ClusterRole", "portcullis-webhook")
    check(not grants(rules, "secrets", "get") and not grants(rules, "serviceaccounts", "get"), f"{label}: secretsAccess=false keeps Secrets unreadable")


def assert_exclusions(objects):
    label = "exclusions-values"
    vwc = find(objects, "ValidatingWebhookConfiguration")
    for w in vwc["webhooks"]:
        exprs = w["namespaceSelector"]["matchExpressions"]
        check({"key": "portcullis.dev/gate", "operator": "NotIn", "values": ["disabled"]} in exprs, f"{label}: namespace label {exprs}")
        check(w.get("objectSelector") == {"matchExpressions": [{"key": "portcullis.dev/skip", "operator": "DoesNotExist"}]}, f"{label}: objectSelector")
        check([m["name"] for m in w.get("matchConditions", [])] == ["not-the-ci-deployer"], f"{label}: matchConditions")


ASSERTIONS = {
    "production-values.yaml": assert_production,
    "audit-first-values.yaml": assert_audit_first,
    "cert-manager-values.yaml": lambda o: (assert_cert_manager(o, "cert-manager-values", True), assert_no_secrets(o, "cert-manager-values")),
    "cert-manager-issuer-values.yaml": lambda o: assert_cert_manager(o, "cert-manager-issuer-values", False),
    "exclusions-values.yaml": assert_exclusions,
}


# -------------------------------------------------------------------- flags


def help_flags(binary):
    out = must([str(BIN_DIR / binary), "--help"])
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out))


def check_flags(scenarios):
    """Every flag the chart renders exists in the binary and its value parses."""
    known = {}
    for binary in ("portcullis-webhook", "portcullis-operator"):
        path = BIN_DIR / binary
        if check(path.exists(), f"{path} not built (cargo build first)"):
            known[binary] = help_flags(binary)
    pending = set()
    for label, binary, rendered in scenarios:
        if binary not in known:
            continue
        present = []
        for a in rendered:
            flag = a.split("=", 1)[0]
            if flag in known[binary]:
                present.append(a)
            elif binary == "portcullis-webhook" and flag in PENDING_WEBHOOK_FLAGS:
                pending.add(flag)
            else:
                fail(f"{label}: the chart renders {a}, which {binary} does not know")
        # clap checks every value (and repeats) before it acts on --help.
        r = run([str(BIN_DIR / binary), *present, "--help"])
        check(r.returncode == 0, f"{label}: {binary} refuses the chart's arguments {present}:\n{r.stderr}")
    for flag in sorted(pending):
        print(f"   pending: portcullis-webhook has no {flag} yet (the lead adds it on main); not checked")


# ------------------------------------------------------------- README table


def leaf_keys(d, prefix=""):
    for k, v in d.items():
        path = f"{prefix}{k}"
        # Free-form maps (resources, labels, annotations) are one key each.
        if isinstance(v, dict) and v and k not in ("resources", "labels", "annotations"):
            yield from leaf_keys(v, path + ".")
        else:
            yield path


def check_readme():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    table = readme.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    leaves = set(leaf_keys(values))
    for k in sorted(leaves - documented):
        fail(f"values key {k} is not in the table of deploy/helm/portcullis/README.md")
    for k in sorted(documented - leaves):
        fail(f"deploy/helm/portcullis/README.md documents {k}, which values.yaml does not have")


# --------------------------------------------------------------- monitoring

MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
MONITORING_FILES = {
    "ServiceMonitor": "servicemonitor.yaml",
    "PrometheusRule": "prometheusrule.yaml",
    "ConfigMap": "grafana-dashboard.yaml",
}
GENERATED = "# Generated from deploy/helm/portcullis (ci/monitoring-values.yaml) by\n# `python3 e2e/deploy_check.py --write-monitoring`; edit the chart's files/, not this.\n"


def monitoring_objects():
    rendered = docs(render(CHART / "ci/monitoring-values.yaml"))
    return [normalise(d) for d in rendered if d["kind"] in MONITORING_KINDS and d["metadata"]["name"].startswith("portcullis")
            and not (d["kind"] == "ConfigMap" and d["metadata"]["name"] != "portcullis-grafana-dashboard")]


def write_monitoring():
    for d in monitoring_objects():
        path = MONITORING / MONITORING_FILES[d["kind"]]
        path.write_text(GENERATED + yaml.safe_dump(d, sort_keys=False, width=1000))
        print(f"wrote {path.relative_to(ROOT)}")


# ------------------------------------------------------------------ runbook


def github_anchor(heading):
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def check_runbook_links():
    runbook = (ROOT / "docs/runbook.md").read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", runbook, re.M)}
    alerts = yaml.safe_load((CHART / "files/alerts.yaml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"].get("runbook_url", "")
            check(url.startswith("https://github.com/portcullis-dev/portcullis/blob/main/docs/runbook.md#"), f"{rule['alert']}: runbook_url {url}")
            check(url.split("#", 1)[-1] in anchors, f"{rule['alert']}: docs/runbook.md has no section #{url.split('#', 1)[-1]}")
    for link in re.findall(r"\]\(#([^)]+)\)", runbook):
        check(link in anchors, f"docs/runbook.md links to #{link}, which is not a heading")


# ------------------------------------------------------------ release files


def check_release_files():
    """No Docker engine runs here, so the Dockerfile cannot be built in the
    tests; what can drift from the offline images (e2e/image.py) is checked."""
    text = (ROOT / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", text, re.M | re.S))
    for stage, binary in (("webhook", "portcullis-webhook"), ("operator", "portcullis-operator")):
        body = stages.get(stage, "")
        check(body, f"Dockerfile: no stage {stage}")
        check("USER 65532:65532" in body, f"Dockerfile {stage}: USER 65532:65532")
        check(f'ENTRYPOINT ["/usr/local/bin/{binary}"]' in body, f"Dockerfile {stage}: entrypoint /usr/local/bin/{binary}")
        check("org.opencontainers.image.licenses=\"Apache-2.0\"" in body, f"Dockerfile {stage}: OCI labels")
    check("ARG RUNTIME=gcr.io/distroless/cc-debian12:nonroot" in text and "-bookworm AS build" in text,
          "Dockerfile: Debian 12 (glibc 2.36) at build and run time, like the offline images")
    wf = yaml.safe_load((ROOT / ".github/workflows/release.yaml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job.get("steps", [])]
    blob = json.dumps(steps)
    check(wf["jobs"]["images"]["strategy"]["matrix"]["component"] == sorted(stages.keys() - {"build"}, reverse=True),
          "release workflow: one image job per Dockerfile stage")
    check("linux/amd64,linux/arm64" in blob, "release workflow: multi-arch")
    check("check advisories" in blob, "release workflow: cargo deny check advisories")
    check("cosign sign" in blob and "cosign attest" in blob, "release workflow: cosign signature and SBOM attestation")
    check("portcullis-attach" in blob, "release workflow: SBOM attached as a referrer")


# --------------------------------------------------------------------- main


def main():
    if "--write-monitoring" in sys.argv:
        write_monitoring()
        return
    print(f"== chart: {must([HELM, 'version', '--short']).strip()}")
    scenarios = [("defaults", None)] + [(p.name, p) for p in sorted((CHART / "ci").glob("*.yaml"))]
    rendered_args = []
    default_objects = None
    for label, values in scenarios:
        lint = [HELM, "lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
        r = run(lint)
        check(r.returncode == 0, f"{label}: helm lint --strict:\n{r.stdout}{r.stderr}")
        objects = docs(render(values))
        print(f"   {label}: {len(objects)} objects")
        validate(objects, label)
        assert_common(objects, label)
        if values is None:
            default_objects = objects
            assert_default(objects)
        elif values.name in ASSERTIONS:
            ASSERTIONS[values.name](objects)
        for b in ("portcullis-webhook", "portcullis-operator"):
            rendered_args.append((label, b, args(objects, b)))
    # The release namespace, whatever it is, is never gated.
    other = docs(render(namespace="security-tools"))
    assert_common(other, "defaults in namespace security-tools", "security-tools")
    # Wrong values are refused at render time, not in the cluster.
    for bad in (["--set", "admission.failurePolicy=Maybe"], ["--set", "images.webhook.digest=latest"],
                ["--set", "webhook.clientAuth.enabled=true"], ["--set", "webhook.typo=1"]):
        r = run([HELM, "template", "x", str(CHART), *bad])
        check(r.returncode != 0, f"helm template {' '.join(bad)} should fail")

    print("== parity: chart defaults vs kubectl kustomize deploy/")
    kustomized = docs(must(["kubectl", "kustomize", str(ROOT / "deploy")]))
    namespaces = [d for d in kustomized if d["kind"] == "Namespace"]
    check([d["metadata"]["name"] for d in namespaces] == [NAMESPACE], "kustomize must create the portcullis Namespace")
    compare("helm template (defaults)", by_key(default_objects), "kubectl kustomize deploy/",
            by_key([d for d in kustomized if d["kind"] != "Namespace"]))

    print("== parity: chart NetworkPolicy vs deploy/extras/webhook-networkpolicy.yaml")
    chart_np = find(docs(render(extra=["--set", "networkPolicy.enabled=true"])), "NetworkPolicy", "portcullis-webhook")
    extras_np = docs((ROOT / "deploy/extras/webhook-networkpolicy.yaml").read_text())[0]
    for d in (chart_np, extras_np):
        d["metadata"].pop("labels", None)
    compare("helm template --set networkPolicy.enabled=true", by_key([chart_np]), "deploy/extras/webhook-networkpolicy.yaml", by_key([extras_np]))

    print("== parity: chart monitoring values vs kubectl kustomize deploy/monitoring")
    compare("helm template (ci/monitoring-values.yaml)", by_key(monitoring_objects()), "kubectl kustomize deploy/monitoring",
            by_key(docs(must(["kubectl", "kustomize", str(MONITORING)]))))

    print("== the chart's flags against the real binaries")
    check_flags(rendered_args)

    print("== every values key documented in the chart README")
    check_readme()

    print("== samples name the namespace Portcullis installs into")
    for path in sorted((ROOT / "config/samples").glob("*.yaml")):
        for ref in re.findall(r"namespace:\s*([a-z0-9-]+)", path.read_text()):
            check(ref == NAMESPACE, f"{path.relative_to(ROOT)} names namespace {ref}, not {NAMESPACE}")

    print("== every alert's runbook_url names a section of docs/runbook.md")
    check_runbook_links()

    print("== Dockerfile and release workflow agree with the offline images (e2e/image.py)")
    check_release_files()

    if failures:
        sys.exit(f"deploy_check: {len(failures)} problem(s)")
    print("deploy_check: all checks passed")


if __name__ == "__main__":
    main()
