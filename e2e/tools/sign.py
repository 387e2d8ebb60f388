#!/usr/bin/env python3
"""Signs test evidence at test time, with PyPI's `cryptography` (a signer
independent of the webhook's ring-based verifier), so statements can name the
digests of images the tests just pushed.

  sign.py keygen DIR                         -> DIR/key.pem, DIR/key.pub (ECDSA P-256)
  sign.py dsse KEY SUBJECT PREDICATE_FILE PREDICATE_TYPE OUT [--scan-time T]
      an in-toto Statement v1 about SUBJECT (sha256:...), in a DSSE envelope
      signed over the pre-authentication encoding; for a cosign vuln predicate
      --scan-time sets metadata.scanStartedOn/scanFinishedOn
  sign.py openvex SUBJECT VULN OUT [--timestamp T]
      an OpenVEX document saying VULN does not affect the image SUBJECT
  sign.py simplesigning KEY MANIFEST_DIGEST OUT_PAYLOAD OUT_SIG
      a classic cosign simple-signing payload for a manifest and its signature
"""
import base64
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def keygen(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(os.path.join(directory, "key.pub"), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def dsse(key_path, subject, predicate_file, predicate_type, out, scan_time=None):
    with open(predicate_file) as f:
        predicate = json.load(f)
    predicate = predicate.get("predicate", predicate)
    if scan_time and isinstance(predicate.get("metadata"), dict):
        predicate["metadata"]["scanStartedOn"] = scan_time
        predicate["metadata"]["scanFinishedOn"] = scan_time
    algorithm, hexdigest = subject.split(":", 1)
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image", "digest": {algorithm: hexdigest}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    payload = json.dumps(statement, separators=(",", ":")).encode()
    payload_type = "application/vnd.in-toto+json"
    signature = load_key(key_path).sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }
    with open(out, "w") as f:
        json.dump(envelope, f)


def openvex(subject, vuln, out, timestamp="2026-11-20T10:00:00Z"):
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://portcullis.dev/e2e/vex-1",
        "author": "e2e",
        "timestamp": timestamp,
        "version": 1,
        "statements": [{
            "vulnerability": {"name": vuln},
            "products": [{"@id": subject}],
            "status": "not_affected",
            "justification": "vulnerable_code_not_in_execute_path",
        }],
    }
    with open(out, "w") as f:
        json.dump(doc, f)


def simplesigning(key_path, manifest_digest, out_payload, out_sig):
    payload = json.dumps({
        "critical": {
            "identity": {"docker-reference": "e2e/report"},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }, separators=(",", ":")).encode()
    signature = load_key(key_path).sign(payload, ec.ECDSA(hashes.SHA256()))
    with open(out_payload, "wb") as f:
        f.write(payload)
    with open(out_sig, "w") as f:
        f.write(base64.b64encode(signature).decode())


def main(argv):
    command, args = argv[1], argv[2:]
    flags = {}
    while len(args) >= 2 and args[-2].startswith("--"):
        flags[args[-2][2:].replace("-", "_")] = args[-1]
        args = args[:-2]
    {"keygen": keygen, "dsse": dsse, "openvex": openvex, "simplesigning": simplesigning}[command](*args, **flags)


if __name__ == "__main__":
    main(sys.argv)
