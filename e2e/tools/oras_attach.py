#!/usr/bin/env python3
"""Attaches a findings report to an image with oras-py (a third-party client):
`oras_attach.py REGISTRY/REPO@DIGEST REPORT [--media-type T] [--artifact-type T]`.
The subject is built by hand (oras-py's `Subject.from_manifest` recomputes a
wrong digest). oras-py does not maintain the referrers fallback tag, so this
is for registries with the referrers API (ferro-oci-server)."""
import argparse
import os
import sys

import oras.oci
import oras.provider
import requests


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("subject", help="REGISTRY/REPO@sha256:...")
    ap.add_argument("report")
    ap.add_argument("--media-type", default="application/json")
    ap.add_argument("--artifact-type", default="application/vnd.portcullis.findings.v1+json")
    ap.add_argument("--created", default=None)
    args = ap.parse_args()
    name, digest = args.subject.split("@", 1)
    registry, repo = name.split("/", 1)
    accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
    resp = requests.get(f"http://{registry}/v2/{repo}/manifests/{digest}", headers={"Accept": accept}, timeout=10)
    resp.raise_for_status()
    subject = oras.oci.Subject(
        mediaType=resp.headers["Content-Type"].split(";")[0], digest=digest, size=len(resp.content))
    client = oras.provider.Registry(hostname=registry, insecure=True)
    annotations = {}
    if args.created:
        annotations["org.opencontainers.image.created"] = args.created
    os.chdir(os.path.dirname(os.path.abspath(args.report)))
    client.push(
        target=f"{registry}/{repo}:findings-{digest[7:19]}",
        files=[f"{os.path.basename(args.report)}:{args.media_type}"],
        subject=subject,
        manifest_annotations=annotations or None,
        manifest_config=f"/dev/null:{args.artifact_type}",
        disable_path_validation=True,
        quiet=True,
    )


if __name__ == "__main__":
    sys.exit(main())
