#!/usr/bin/env python3
"""Writes a small OCI image layout for the tests and the demo, then pushes it
with skopeo (a real client): `make_image.py REGISTRY/REPO:TAG [--platform
linux/amd64 ...] [--insecure]`. One platform gives an image manifest; several
give an image index (pushed with `skopeo copy --all`). Each image has one
layer whose content names the image and platform, so every digest differs.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile


def blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def layer_bytes(text):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("etc/portcullis-sample")
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def image(layout, ref, platform):
    os_name, arch, *variant = platform.split("/")
    layer = layer_bytes(f"{ref} {platform}\n")
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = {
        "architecture": arch,
        "os": os_name,
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    if variant:
        config["variant"] = variant[0]
    cfg = blob(layout, json.dumps(config, sort_keys=True).encode())
    lyr = blob(layout, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **lyr}],
    }
    desc = blob(layout, json.dumps(manifest, sort_keys=True).encode())
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **desc}
    p = {"os": os_name, "architecture": arch}
    if variant:
        p["variant"] = variant[0]
    return desc, p


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("ref", help="REGISTRY/REPO:TAG")
    ap.add_argument("--platform", action="append", default=[])
    ap.add_argument("--insecure", action="store_true", help="plain HTTP registry")
    args = ap.parse_args()
    platforms = args.platform or ["linux/amd64"]
    with tempfile.TemporaryDirectory() as layout:
        os.makedirs(os.path.join(layout, "blobs", "sha256"))
        with open(os.path.join(layout, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        descs = [image(layout, args.ref, p) for p in platforms]
        if len(descs) == 1:
            top = descs[0][0]
        else:
            index = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{**d, "platform": p} for d, p in descs],
            }
            top = {"mediaType": "application/vnd.oci.image.index.v1+json",
                   **blob(layout, json.dumps(index, sort_keys=True).encode())}
        top = {**top, "annotations": {"org.opencontainers.image.ref.name": "latest"}}
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [top]}, f)
        cmd = ["skopeo", "copy", "--quiet", "--all", "--preserve-digests",
               f"oci:{layout}:latest", f"docker://{args.ref}"]
        if args.insecure:
            cmd.insert(2, "--dest-tls-verify=false")
        subprocess.run(cmd, check=True)
        print(top["digest"])
        for d, p in descs if len(descs) > 1 else []:
            plat = "/".join([p["os"], p["architecture"]] + ([p["variant"]] if "variant" in p else []))
            print(f"{plat} {d['digest']}")


if __name__ == "__main__":
    sys.exit(main())
