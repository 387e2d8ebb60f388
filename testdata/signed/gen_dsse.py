#!/usr/bin/env python3
"""Generates the DSSE envelopes, VEX documents and classic cosign signature of
testdata/signed/ (see README.md there). Signing is done by securesystemslib's
CryptoSigner (DSSE) and by `cryptography` (cosign simple signing). Fresh keys
are generated on every run; only public keys are written.

    python3 -m pip install 'securesystemslib[crypto]==1.6.0'   # or e2e/install-tools.sh --signing
    python3 testdata/signed/gen_dsse.py
"""
import base64
import copy
import hashlib
import json
import pathlib

import cryptography
import securesystemslib
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

HERE = pathlib.Path(__file__).resolve().parent
TESTDATA = HERE.parent
INTOTO = "application/vnd.in-toto+json"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Fixed digests the statements name (recorded in digests.json).
IMAGE = sha256("portcullis testdata: image linux/amd64")
INDEX = sha256("portcullis testdata: image index")
OTHER = sha256("portcullis testdata: some other image")
REPO = "registry.example.com/acme/app"


def pem(public_key) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def write(rel: str, data) -> None:
    path = HERE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (dict, list)):
        data = json.dumps(data, indent=2) + "\n"
    path.write_text(data) if isinstance(data, str) else path.write_bytes(data)


def envelope(statement: dict, signer: CryptoSigner, payload_type: str = INTOTO) -> dict:
    env = Envelope(
        payload=json.dumps(statement, separators=(",", ":")).encode(),
        payload_type=payload_type,
        signatures={},
    )
    env.sign(signer)
    return env.to_dict()


def statement(type_: str, subjects: list, predicate_type: str, predicate: dict) -> dict:
    return {
        "_type": type_,
        "subject": subjects,
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def main() -> None:
    # Producer keys: trusted (public halves committed) and one unknown.
    p256 = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa3072 = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    unknown = ec.generate_private_key(ec.SECP256R1())
    write("keys/producer-p256.pub", pem(p256.public_key()))
    write("keys/producer-ed25519.pub", pem(ed.public_key()))
    write("keys/producer-p384.pub", pem(p384.public_key()))
    write("keys/producer-rsa3072.pub", pem(rsa3072.public_key()))
    # Keys Portcullis must refuse: too-small RSA, a curve it does not support, DSA.
    write("keys/weak-rsa1024.pub", pem(rsa.generate_private_key(65537, 1024).public_key()))
    write("keys/unsupported-secp256k1.pub", pem(ec.generate_private_key(ec.SECP256K1()).public_key()))
    write("keys/unsupported-dsa2048.pub", pem(dsa.generate_private_key(2048).public_key()))

    # The DSSE keyid of each signature is the SHA-256 of the signer's DER
    # SubjectPublicKeyInfo, the id Portcullis gives keys.
    def signer(key, scheme=None):
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keyid = hashlib.sha256(spki).hexdigest()
        return CryptoSigner(key, SSlibKey.from_crypto(key.public_key(), keyid=keyid, scheme=scheme))

    s_p256, s_ed, s_p384, s_unknown = (signer(k) for k in (p256, ed, p384, unknown))
    s_rsa = signer(rsa3072, "rsassa-pss-sha256")

    # 1. cosign vuln predicate (the cosign spec's example, Trivy 0.19.2, alpine 3.12)
    #    about the platform image, Statement v0.1 as cosign writes it.
    cosign_pred = json.loads(
        (TESTDATA / "cosign-vuln-attestation/cosign-spec-example-predicate-alpine-3.12.json").read_text()
    )["predicate"]
    subj_image = [{"name": REPO, "digest": {"sha256": IMAGE}}]
    st_cosign = statement(
        "https://in-toto.io/Statement/v0.1",
        subj_image,
        "https://cosign.sigstore.dev/attestation/vuln/v1",
        cosign_pred,
    )
    good = envelope(st_cosign, s_p256)
    write("dsse/cosign-vuln.p256.dsse.json", good)
    write("dsse/cosign-vuln.p384.dsse.json", envelope(st_cosign, s_p384))
    write("dsse/cosign-vuln.rsa3072.dsse.json", envelope(st_cosign, s_rsa))

    # Tampered: one HIGH turned into LOW in the payload, signature kept.
    tampered = copy.deepcopy(good)
    payload = base64.b64decode(tampered["payload"]).decode()
    assert '"Severity":"HIGH"' in payload
    tampered["payload"] = base64.b64encode(
        payload.replace('"Severity":"HIGH"', '"Severity":"LOW"', 1).encode()
    ).decode()
    write("dsse/cosign-vuln.p256.tampered.dsse.json", tampered)

    # Signed by a key no producer lists.
    write("dsse/cosign-vuln.unknown-key.dsse.json", envelope(st_cosign, s_unknown))

    # Scan time in the far future.
    future_pred = copy.deepcopy(cosign_pred)
    future_pred["metadata"] = {
        "scanStartedOn": "2099-01-01T00:00:00Z",
        "scanFinishedOn": "2099-01-01T00:05:00Z",
    }
    write(
        "dsse/cosign-vuln.future.p256.dsse.json",
        envelope(dict(st_cosign, predicate=future_pred), s_p256),
    )

    # 2. in-toto vulns v0.2 (GUAC's osv certifier output, log4j-core 2.8.1) about the
    #    image index, Statement v1, Ed25519.
    vulns = json.loads((TESTDATA / "intoto-vulns/guac-certify-vuln-v02.json").read_text())
    st_vulns = statement(
        "https://in-toto.io/Statement/v1",
        [{"name": REPO, "digest": {"sha256": INDEX}}],
        vulns["predicateType"],
        vulns["predicate"],
    )
    write("dsse/intoto-vulns.ed25519.dsse.json", envelope(st_vulns, s_ed))

    # 3. VEX, written here, about the platform image; signed as DSSE too.
    openvex = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/acme-app-2026-001",
        "author": "Acme Product Security <security@example.com>",
        "timestamp": "2026-11-20T09:00:00Z",
        "version": 1,
        "statements": [
            {   # busybox only (a subcomponent): ssl_client, same CVE, stays.
                "vulnerability": {"name": "CVE-2021-28831"},
                "products": [{
                    "@id": f"pkg:oci/app@sha256%3A{IMAGE}?repository_url={REPO}",
                    "subcomponents": [{"@id": "pkg:apk/alpine/busybox@1.31.1-r21?arch=x86_64"}],
                }],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
                "impact_statement": "busybox's gunzip is never invoked in this image",
            },
            {   # Earlier "not_affected", later "affected": the later one wins.
                "vulnerability": {"name": "CVE-2021-36159"},
                "timestamp": "2026-11-01T00:00:00Z",
                "products": [{"@id": f"sha256:{IMAGE}"}],
                "status": "not_affected",
                "justification": "component_not_present",
            },
            {
                "vulnerability": {"name": "CVE-2021-36159"},
                "timestamp": "2026-11-15T00:00:00Z",
                "products": [{"@id": f"sha256:{IMAGE}"}],
                "status": "affected",
                "action_statement": "upgrade apk-tools",
            },
            {   # About another image: must not suppress anything here.
                "vulnerability": {"name": "CVE-2021-28831"},
                "products": [{"@id": f"pkg:oci/other@sha256%3A{OTHER}"}],
                "status": "not_affected",
                "justification": "component_not_present",
            },
        ],
    }
    write("vex/acme-app.openvex.json", openvex)
    write(
        "vex/acme-app.openvex.p256.dsse.json",
        envelope(
            statement("https://in-toto.io/Statement/v1", subj_image, "https://openvex.dev/ns/v0.2.0", openvex),
            s_p256,
        ),
    )
    cdx_vex = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "version": 1,
        "metadata": {"timestamp": "2026-11-21T10:00:00Z"},
        "components": [{
            "bom-ref": "log4j-core",
            "type": "library",
            "name": "log4j-core",
            "version": "2.8.1",
            "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.8.1",
        }],
        "vulnerabilities": [
            {   # The whole index: resolved.
                "id": "GHSA-7rjr-3q55-vv33",
                "analysis": {"state": "resolved", "detail": "patched in the base image"},
                "affects": [{"ref": f"pkg:oci/app@sha256:{INDEX}"}],
            },
            {   # A component of the document, by bom-ref.
                "id": "GHSA-jfh8-c2jp-5v3q",
                "analysis": {"state": "false_positive"},
                "affects": [{"ref": "log4j-core"}],
            },
            {   # exploitable: suppresses nothing.
                "id": "GHSA-8489-44mv-ggj8",
                "analysis": {"state": "exploitable"},
                "affects": [{"ref": f"pkg:oci/app@sha256:{INDEX}"}],
            },
        ],
    }
    write("vex/acme-app.cdx-vex.json", cdx_vex)
    write(
        "vex/acme-app.cdx-vex.ed25519.dsse.json",
        envelope(
            statement(
                "https://in-toto.io/Statement/v1",
                [{"name": REPO, "digest": {"sha256": INDEX}}],
                "https://cyclonedx.org/bom",
                cdx_vex,
            ),
            s_ed,
        ),
    )

    # 4. Classic cosign simple signing of a report manifest (image <- report <- signature).
    report = (TESTDATA / "trivy-json/trivy-alpine-310.json.golden").read_bytes()
    config = b"{}"
    report_manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.aquasec.trivy.report+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [{
            "mediaType": "application/vnd.aquasec.trivy.report+json",
            "digest": "sha256:" + hashlib.sha256(report).hexdigest(),
            "size": len(report),
        }],
        "subject": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{IMAGE}",
            "size": 1234,
        },
        "annotations": {"org.opencontainers.image.created": "2026-11-20T08:00:00Z"},
    }, indent=2).encode()
    write("cosign/report-manifest.json", report_manifest)
    report_digest = hashlib.sha256(report_manifest).hexdigest()
    payload = json.dumps({
        "critical": {
            "identity": {"docker-reference": REPO},
            "image": {"docker-manifest-digest": f"sha256:{report_digest}"},
            "type": "cosign container image signature",
        },
        "optional": {"creator": "portcullis testdata", "timestamp": 1795680000},
    }, separators=(",", ":")).encode()
    write("cosign/simplesigning.payload.json", payload)
    sig = base64.b64encode(p256.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    write("cosign/simplesigning.sig", sig)
    write("cosign/simplesigning.unknown-key.sig",
          base64.b64encode(unknown.sign(payload, ec.ECDSA(hashes.SHA256()))).decode())
    # What cosign pushes as the `sha256-<digest>.sig` tag.
    write("cosign/sig-manifest.json", {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
            "annotations": {"dev.cosignproject.cosign/signature": sig},
        }],
    })

    write("digests.json", {
        "image": f"sha256:{IMAGE}",
        "index": f"sha256:{INDEX}",
        "other": f"sha256:{OTHER}",
        "reportManifest": f"sha256:{report_digest}",
        "repository": REPO,
        "tools": {
            "python": "securesystemslib " + securesystemslib.__version__,
            "cryptography": cryptography.__version__,
        },
    })


if __name__ == "__main__":
    main()
