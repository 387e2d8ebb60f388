#!/usr/bin/env python3
"""Offline container images of portcullis-webhook and portcullis-operator,
built, pushed, inspected, unpacked, run and given an SBOM (e2e/image.sh).

No Docker engine runs here and no base image can be pulled, so the images are
assembled the way distroless is: a scratch image with the glibc, libgcc and
CA-certificate files of Debian 12's own packages (`apt-get download`, the
versions the binaries were built against, `dpkg-deb -x`), their dpkg status
entries (so that SBOM tools and scanners see them), /etc/passwd with the
nonroot user 65532, and one layer with the binary. `umoci` writes the OCI
layout and config (User 65532, Entrypoint, exposed ports, OCI labels);
`skopeo` pushes it to a local registry (Debian's docker-registry).

Then, as a user would: `skopeo inspect` (config and labels); `skopeo copy`
back into an OCI layout and `umoci unpack`; run `--version` of each binary
from the unpacked root file system (as root: chroot as 65532 on a read-only
bind mount of the rootfs; otherwise through the rootfs's own dynamic loader);
serve the webhook from the read-only rootfs and ask it to judge a Pod running
Portcullis's own image; generate the image's SBOM with syft from the
registry and attach it as a referrer with portcullis-attach, then read it
back through the fallback tag.

    python3 e2e/image.py [--profile debug|release] [--keep DIR]
The release workflow (.github/workflows/release.yaml) builds the published,
multi-arch images with the Dockerfile instead.
"""
import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARIES = {
    "portcullis-webhook": {"ports": ["8443/tcp", "9090/tcp"],
                           "description": "Portcullis validating admission webhook: gates images on their vulnerability findings"},
    "portcullis-operator": {"ports": ["9091/tcp"],
                            "description": "Portcullis operator: rule sources, webhook certificates, federated identity"},
}
# Debian 12 packages whose files the binaries need at run time (and the
# copyright of libgcc, which lives in gcc-12-base).
PACKAGES = ["libc6", "libgcc-s1", "gcc-12-base", "ca-certificates"]
NONROOT = 65532
IS_ROOT = os.geteuid() == 0


def log(msg):
    print(msg, flush=True)


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def expect(cond, msg):
    if not cond:
        sys.exit(f"image: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def version():
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]


# ------------------------------------------------------------------ build


def binaries(profile):
    out = ROOT / "target" / profile
    missing = [b for b in BINARIES if not (out / b).exists()]
    if profile == "release" or missing:
        started = time.monotonic()
        cmd = ["cargo", "build", "--locked", "-p", "portcullis-webhook", "-p", "portcullis-operator", "--bins"]
        if profile == "release":
            cmd.append("--release")
        log(f"== cargo build ({profile})")
        subprocess.run(cmd, cwd=ROOT, check=True)
        log(f"   built in {time.monotonic() - started:.0f} s")
    return {b: out / b for b in BINARIES}


def debs(cache):
    """The runtime packages at the versions installed here (the binaries were
    linked against this glibc)."""
    cache.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for p in PACKAGES:
        v = run(["dpkg-query", "-W", "-f=${Version}", p]).strip()
        arch = run(["dpkg-query", "-W", "-f=${Architecture}", p]).strip()
        wanted[p] = cache / f"{p}_{v.replace(':', '%3a')}_{arch}.deb"
    missing = [f"{p}={run(['dpkg-query', '-W', '-f=${Version}', p]).strip()}" for p, f in wanted.items() if not f.exists()]
    if missing:
        log(f"== apt-get download {' '.join(missing)}")
        # _apt cannot write into root's directories: download in a world-writable one.
        tmp = Path(tempfile.mkdtemp(prefix="portcullis-debs-"))
        os.chmod(tmp, 0o777)
        r = subprocess.run(["apt-get", "download", *missing], cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            sudo = [] if IS_ROOT else ["sudo"]
            run([*sudo, "apt-get", "update", "-qq"])
            run(["apt-get", "download", *missing], cwd=tmp)
        for f in tmp.iterdir():
            shutil.move(str(f), cache / f.name)
        shutil.rmtree(tmp)
    for p, f in wanted.items():
        expect(f.exists(), f"{f} was not downloaded")
    return wanted


def base_rootfs(dest, packages, epoch):
    """glibc + libgcc + CA bundle + passwd/group + dpkg status, like distroless/cc."""
    extracted = dest.parent / "extracted"
    for p, deb in packages.items():
        (extracted / p).mkdir(parents=True)
        run(["dpkg-deb", "-x", deb, extracted / p])
    def copy(pkg, rel, to=None):
        src = extracted / pkg / rel
        dst = dest / (to or rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    for f in sorted((extracted / "libc6/lib/x86_64-linux-gnu").iterdir()):
        copy("libc6", f"lib/x86_64-linux-gnu/{f.name}")
    for f in sorted((extracted / "libc6/lib64").iterdir()):
        copy("libc6", f"lib64/{f.name}")
    copy("libgcc-s1", "lib/x86_64-linux-gnu/libgcc_s.so.1")
    for p in ("libc6", "gcc-12-base", "ca-certificates"):
        copy(p, f"usr/share/doc/{p}/copyright")
    copy("libgcc-s1", "usr/share/doc/libgcc-s1")
    # The CA bundle, as update-ca-certificates would make it from Mozilla's set.
    certs = sorted((extracted / "ca-certificates/usr/share/ca-certificates/mozilla").glob("*.crt"))
    bundle = dest / "etc/ssl/certs/ca-certificates.crt"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text("".join(c.read_text().strip() + "\n" for c in certs))
    # dpkg status, one file per package (distroless's layout), for SBOM tools.
    status = dest / "var/lib/dpkg/status.d"
    status.mkdir(parents=True)
    for p, deb in packages.items():
        control = run(["dpkg-deb", "-f", deb]).rstrip("\n")
        lines = control.splitlines()
        lines.insert(1, "Status: install ok installed")
        (status / p).write_text("\n".join(lines) + "\n")
    etc = dest / "etc"
    (etc / "passwd").write_text(f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\nnonroot:x:{NONROOT}:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    (etc / "os-release").write_text(
        'PRETTY_NAME="Portcullis runtime (Debian GNU/Linux 12 files)"\nNAME="Debian GNU/Linux"\nID=debian\n'
        'VERSION_ID="12"\nVERSION_CODENAME=bookworm\nHOME_URL="https://github.com/portcullis-dev/portcullis"\n')
    (dest / "tmp").mkdir(mode=0o1777)
    os.chmod(dest / "tmp", 0o1777)
    home = dest / "home/nonroot"
    home.mkdir(parents=True)
    if IS_ROOT:
        os.chown(home, NONROOT, NONROOT)
    touch_all(dest, epoch)


def app_rootfs(dest, binary, epoch):
    target = dest / "usr/local/bin" / binary.name
    target.parent.mkdir(parents=True)
    # Debug info is not shipped (it makes a debug build ten times larger).
    run(["strip", "--strip-debug", "-o", target, binary])
    os.chmod(target, 0o755)
    doc = dest / "usr/share/doc/portcullis"
    doc.mkdir(parents=True)
    shutil.copy2(ROOT / "LICENSE", doc / "LICENSE")
    touch_all(dest, epoch)


def touch_all(tree, epoch):
    for p in [tree, *tree.rglob("*")]:
        os.utime(p, (epoch, epoch), follow_symlinks=False)


def build_image(layout, name, base, app, meta):
    rootless = [] if IS_ROOT else ["--rootless"]
    img = f"{layout}:{name}"
    run(["umoci", "new", "--image", img])
    run(["umoci", "insert", *rootless, "--image", img, "--history.created_by", "Debian 12 runtime files (libc6, libgcc-s1, ca-certificates)", base, "/"])
    run(["umoci", "insert", *rootless, "--image", img, "--history.created_by", f"{name} binary", app, "/"])
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": BINARIES[name]["description"],
        "org.opencontainers.image.version": meta["version"],
        "org.opencontainers.image.revision": meta["revision"],
        "org.opencontainers.image.created": meta["created"],
        "org.opencontainers.image.source": "https://github.com/portcullis-dev/portcullis",
        "org.opencontainers.image.url": "https://github.com/portcullis-dev/portcullis",
        "org.opencontainers.image.documentation": "https://github.com/portcullis-dev/portcullis/blob/main/docs/runbook.md",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.vendor": "Portcullis",
    }
    cmd = ["umoci", "config", "--image", img, "--os", "linux", "--architecture", "amd64", "--author", "Portcullis",
           "--created", meta["created"], "--config.user", f"{NONROOT}:{NONROOT}",
           "--config.entrypoint", f"/usr/local/bin/{name}", "--config.workingdir", "/",
           "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin",
           "--config.env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
           # As the Dockerfile: mimalloc commits arena memory as it is used
           # (the hostile-load peak stays where glibc malloc had it).
           "--config.env", "MIMALLOC_ARENA_EAGER_COMMIT=0"]
    for port in BINARIES[name]["ports"]:
        cmd += ["--config.exposedports", port]
    for k, v in labels.items():
        cmd += ["--config.label", f"{k}={v}", "--manifest.annotation", f"{k}={v}"]
    run(cmd)
    return labels


# ------------------------------------------------------------------- registry


class Registry:
    def __init__(self, work):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        (work / "registry.yml").write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work / 'registry'}\n"
            f"http:\n  addr: {self.addr}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", work / "registry.yml"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=2)
                return
            except OSError:
                expect(time.monotonic() < deadline and self.proc.poll() is None, "docker-registry did not start")
                time.sleep(0.1)

    def stop(self):
        stop(self.proc)


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def skopeo_json(*args):
    return json.loads(run(["skopeo", *args]))


# ------------------------------------------------------------------- run


def in_rootfs(rootfs, argv, read_only=True):
    """argv run inside rootfs as 65532: chroot on a read-only bind mount (root),
    else the rootfs's own dynamic loader and libraries (no root needed)."""
    if IS_ROOT:
        inner = ["chroot", f"--userspec={NONROOT}:{NONROOT}", str(rootfs), *argv]
        if not read_only:
            return inner
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(rootfs), *inner]
    loader = rootfs / "lib64/ld-linux-x86-64.so.2"
    return [str(loader), "--library-path", str(rootfs / "lib/x86_64-linux-gnu"), str(rootfs) + argv[0], *argv[1:]]


def check_unpacked(rootfs, name, ver):
    out = subprocess.run(in_rootfs(rootfs, [f"/usr/local/bin/{name}", "--version"]), capture_output=True, text=True)
    expect(out.returncode == 0, f"{name} --version from the unpacked image failed:\n{out.stderr}")
    expect(out.stdout.strip() == f"{name} {ver}", f"{name} --version printed {out.stdout!r}")
    log(f"   {name} --version from the unpacked rootfs ({'chroot, uid 65532, read-only' if IS_ROOT else 'its own loader'}): {out.stdout.strip()}")
    bundle = (rootfs / "etc/ssl/certs/ca-certificates.crt").read_text()
    expect(bundle.count("BEGIN CERTIFICATE") > 100, "the CA bundle is missing or nearly empty")
    expect(not any((rootfs / p).exists() for p in ("bin/sh", "usr/bin/sh", "bin/busybox")), "the image has a shell")


def serve_webhook(rootfs, work, registry, image_ref):
    """The webhook from the read-only image rootfs (as 65532) judges a Pod that
    runs Portcullis's own image: the SBOM attached to it is not findings."""
    if not IS_ROOT:
        log("   (not root: serving from the image is skipped; --version ran through the image's own loader)")
        return
    # Mounted into the rootfs's /tmp, as the kubelet mounts the TLS Secret.
    data = work / "webhook-tmp" / "data"
    (data / "policies").mkdir(parents=True)
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", data / "tls.key", "-out", data / "tls.crt"])
    (data / "policies/rules.yaml").write_text(
        "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {name: deny-critical}\n"
        "spec: {action: Deny, conditions: {maxAllowedSeverities: {critical: 0}}}\n---\n"
        "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {name: strict-scanned}\n"
        "spec:\n  action: Deny\n  scope: [{matcherType: Namespace, values: [strict]}]\n  conditions: {}\n"
        "  findings: {blockUnscannedImages: true}\n")
    for p in [data, *data.rglob("*")]:
        os.chown(p, NONROOT, NONROOT)
    port, mport = free_port(), free_port()
    argv = ["/usr/local/bin/portcullis-webhook", f"--listen=127.0.0.1:{port}", f"--metrics-listen=127.0.0.1:{mport}",
            "--tls-cert=/tmp/data/tls.crt", "--tls-key=/tmp/data/tls.key", "--policy-dir=/tmp/data/policies",
            "--allow-destination=127.0.0.1/32", f"--insecure-registry={registry.addr}", "--log-format=json"]
    # What the container runtime and the kubelet provide: /etc/resolv.conf and
    # /etc/hosts mounted over mount points it creates (the image has neither).
    (work / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    (work / "hosts").write_text("127.0.0.1 localhost\n")
    for f in ("etc/resolv.conf", "etc/hosts"):
        expect(not (rootfs / f).exists(), f"the image has /{f}: the runtime provides it")
        (rootfs / f).touch()
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && mount --bind "$2" "$1/tmp" '
              '&& mount --bind "$3" "$1/etc/resolv.conf" && mount --bind "$4" "$1/etc/hosts" '
              '&& shift 4 && exec chroot --userspec=65532:65532 "$@"')
    log_file = open(work / "webhook.log", "w")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                             str(rootfs), str(work / "webhook-tmp"), str(work / "resolv.conf"), str(work / "hosts"),
                             str(rootfs), *argv],
                            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{mport}/readyz", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the webhook did not start from the image:\n{(work / 'webhook.log').read_text()}")
                time.sleep(0.2)
        ctx = ssl.create_default_context(cafile=str(data / "tls.crt"))
        answers = {}
        for ns in ("apps", "strict"):
            review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": f"image-{ns}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"}, "name": "gate", "namespace": ns,
                "operation": "CREATE", "userInfo": {"username": "e2e"}, "dryRun": False,
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gate", "namespace": ns},
                           "spec": {"containers": [{"name": "webhook", "image": image_ref}]}}}}
            req = urllib.request.Request(f"https://localhost:{port}/validate", data=json.dumps(review).encode(),
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                answers[ns] = json.load(r)["response"]
        expect(answers["apps"]["allowed"] is True, f"the clean namespace: {answers['apps']}")
        strict = answers["strict"]
        expect(strict["allowed"] is False and "strict-scanned" in strict["status"]["message"],
               f"an SBOM is not findings: blockUnscannedImages must deny: {strict}")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        requests = [l for l in metrics.splitlines() if l.startswith("portcullis_registry_requests_total{")]
        expect(sum(float(l.rsplit(" ", 1)[1]) for l in requests) > 0, f"the webhook in the image made no registry request: {requests}")
        log(f"   portcullis-webhook served from the read-only image as 65532; its own image: "
            f"allowed in apps, denied in strict ({strict['status']['message'][:90]}...)")
    finally:
        stop(proc)


# ------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=["debug", "release"], default=os.environ.get("PORTCULLIS_IMAGE_PROFILE", "debug"))
    ap.add_argument("--keep", help="keep the OCI layout here")
    opts = ap.parse_args()
    for tool in ("umoci", "skopeo", "docker-registry", "syft", "dpkg-deb", "apt-get", "strip", "openssl"):
        expect(shutil.which(tool), f"{tool} is not installed: run `bash e2e/install-tools.sh`")
    os.environ["SYFT_CHECK_FOR_APP_UPDATE"] = "false"
    ver = version()
    epoch = int(run(["git", "-C", ROOT, "log", "-1", "--format=%ct"]).strip())
    meta = {"version": ver, "revision": run(["git", "-C", ROOT, "rev-parse", "HEAD"]).strip(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))}
    bins = binaries(opts.profile)
    packages = debs(ROOT / "target/image/debs")
    work = Path(tempfile.mkdtemp(prefix="portcullis-image-"))
    registry = None
    try:
        log(f"== assembling OCI images ({opts.profile} binaries, Debian 12 runtime files)")
        base = work / "base"
        base_rootfs(base, packages, epoch)
        layout = work / "layout"
        run(["umoci", "init", "--layout", layout])
        registry = Registry(work)
        refs = {}
        for name, path in bins.items():
            app = work / f"app-{name}"
            app_rootfs(app, path, epoch)
            labels = build_image(layout, name, base, app, meta)
            ref = f"{registry.addr}/portcullis/{name}:{ver}"
            run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{name}", f"docker://{ref}"])
            refs[name] = ref
            log(f"== {name}: pushed to {ref}")

            info = skopeo_json("inspect", "--tls-verify=false", f"docker://{ref}")
            config = skopeo_json("inspect", "--tls-verify=false", "--config", f"docker://{ref}")["config"]
            expect(info["Architecture"] == "amd64" and info["Os"] == "linux", f"platform {info['Architecture']}/{info['Os']}")
            expect(info["Labels"] == labels, f"labels {info['Labels']}")
            expect(config["User"] == f"{NONROOT}:{NONROOT}", f"User {config.get('User')}")
            expect(config["Entrypoint"] == [f"/usr/local/bin/{name}"], f"Entrypoint {config.get('Entrypoint')}")
            expect(sorted(config["ExposedPorts"]) == sorted(BINARIES[name]["ports"]), f"ports {config.get('ExposedPorts')}")
            expect(len(info["Layers"]) == 2, f"{len(info['Layers'])} layers")
            size = sum(l["size"] for l in skopeo_json("inspect", "--tls-verify=false", "--raw", f"docker://{ref}")["layers"])
            log(f"   skopeo inspect: {info['Digest']}, User {config['User']}, Entrypoint {config['Entrypoint'][0]}, "
                f"{len(info['Layers'])} layers, {size / 2**20:.1f} MiB compressed, labels org.opencontainers.image.* ({len(labels)})")

            pulled = work / "pulled"
            run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{pulled}:{name}"])
            bundle = work / f"bundle-{name}"
            run(["umoci", "unpack", *([] if IS_ROOT else ["--rootless"]), "--image", f"{pulled}:{name}", bundle])
            check_unpacked(bundle / "rootfs", name, ver)

        ref = refs["portcullis-webhook"]
        log("== SBOM of the webhook image (syft, from the registry) attached as a referrer")
        sbom = work / "sbom.cdx.json"
        env = {**os.environ, "SYFT_REGISTRY_INSECURE_USE_HTTP": "true", "SYFT_CHECK_FOR_APP_UPDATE": "false"}
        run(["syft", "scan", "-q", f"registry:{ref}", "-o", f"cyclonedx-json={sbom}"], env=env)
        doc = json.loads(sbom.read_text())
        found = {c.get("name"): c.get("version") for c in doc.get("components", [])}
        for p in ("libc6", "libgcc-s1", "ca-certificates"):
            installed = run(["dpkg-query", "-W", "-f=${Version}", p]).strip()
            expect(found.get(p) == installed, f"the SBOM lists {p} {found.get(p)}, expected {installed} (dpkg status in the image)")
        expect(any(c.get("purl", "").startswith("pkg:deb/debian/libc6@") for c in doc["components"]), "no Debian purl for libc6")
        attach = ROOT / "target" / "debug" / "portcullis-attach"
        if not attach.exists():
            attach = ROOT / "target" / opts.profile / "portcullis-attach"
        digest = run([attach, ref, sbom, "--insecure", "--artifact-type", "application/vnd.cyclonedx+json",
                      "--media-type", "application/vnd.cyclonedx+json"]).strip()
        subject = skopeo_json("inspect", "--tls-verify=false", f"docker://{ref}")["Digest"]
        repo = ref.rsplit(":", 1)[0]
        index = skopeo_json("inspect", "--tls-verify=false", "--raw", f"docker://{repo}:{subject.replace(':', '-')}")
        listed = [m for m in index["manifests"] if m["digest"] == digest]
        expect(len(listed) == 1 and listed[0].get("artifactType") == "application/vnd.cyclonedx+json",
               f"the fallback tag does not list the SBOM: {index}")
        artifact = skopeo_json("inspect", "--tls-verify=false", "--raw", f"docker://{repo}@{digest}")
        expect(artifact["subject"]["digest"] == subject, "the SBOM's subject is not the image")
        sha = "sha256:" + hashlib.sha256(sbom.read_bytes()).hexdigest()
        expect(artifact["layers"][0]["digest"] == sha, "the SBOM layer is not the generated SBOM")
        log(f"   {len(doc['components'])} components (libc6 {found['libc6']}, libgcc-s1, ca-certificates, ...), "
            f"referrer {digest[:19]}... of {subject[:19]}...")

        log("== the webhook image at work")
        serve_webhook(work / "bundle-portcullis-webhook/rootfs", work, registry, f"{ref.rsplit(':', 1)[0]}@{subject}")
        if opts.keep:
            shutil.copytree(layout, opts.keep, dirs_exist_ok=True)
        log("image: built, pushed, inspected, unpacked, run, SBOM attached")
    finally:
        if registry:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
