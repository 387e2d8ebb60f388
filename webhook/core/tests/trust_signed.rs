//! Verification of the signed material in `testdata/signed/`, made by real
//! third-party signers (securesystemslib, `cryptography`, sigstore-js with its
//! mock Fulcio and Rekor; see testdata/signed/README.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails loudly"
)]

use std::path::PathBuf;

use jiff::Timestamp;
use portcullis_core::findings::{FormatHint, parse_report};
use portcullis_core::severity::Severity;
use portcullis_core::trust::{
    BundleArtifact, DigestSet, KeyAlgorithm, KeyError, Producer, ProducerError, PublicKey,
    Rejection, STATEMENT_V01, STATEMENT_V1, Signer, VerifiedContent, verify_with_any,
};
use portcullis_crds::{
    KeylessIdentity, PublicKeySecretRef, PublicKeySource, TrustedProducerSpec, TrustedRootRef,
};
use proptest::prelude::*;

fn signed(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/signed")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(rel: &str) -> String {
    String::from_utf8(signed(rel)).unwrap()
}

fn digests() -> serde_json::Value {
    serde_json::from_slice(&signed("digests.json")).unwrap()
}

fn digest(name: &str) -> String {
    digests()[name].as_str().unwrap().to_owned()
}

/// The platform image and the index it belongs to.
fn image() -> DigestSet {
    let (i, x) = (digest("image"), digest("index"));
    DigestSet::new([i.as_str(), x.as_str()])
}

fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn spec() -> TrustedProducerSpec {
    TrustedProducerSpec {
        description: None,
        public_keys: Vec::new(),
        keyless: Vec::new(),
        trusted_root_ref: None,
        trusted_root: None,
        require_transparency_log: false,
    }
}

fn pem(rel: &str) -> PublicKeySource {
    PublicKeySource {
        pem: Some(text(rel)),
        secret_ref: None,
    }
}

fn load(name: &str, spec: &TrustedProducerSpec) -> Producer {
    Producer::load(name, spec, |_| None, |_| None).unwrap()
}

fn keyed(keys: &[&str]) -> Producer {
    let mut s = spec();
    s.public_keys = keys.iter().map(|k| pem(k)).collect();
    load("ci-scanner", &s)
}

fn key_id(rel: &str) -> portcullis_core::trust::KeyId {
    PublicKey::from_pem(&text(rel)).unwrap().id()
}

#[test]
fn dsse_p256_cosign_vuln_verifies_with_its_statement_and_scan_time() {
    let producer = keyed(&["keys/producer-ed25519.pub", "keys/producer-p256.pub"]);
    let v = producer
        .verify_dsse(&signed("dsse/cosign-vuln.p256.dsse.json"), &image(), now())
        .unwrap();
    assert_eq!(v.producer, "ci-scanner");
    assert_eq!(v.signer, Signer::Key(key_id("keys/producer-p256.pub")));
    assert_eq!(v.signed_time, Some(ts("2021-08-06T17:50:50.52Z")));
    assert_eq!(v.log_time, None);
    assert_eq!(v.time(), v.signed_time);
    let (statement, payload) = v.statement().unwrap();
    assert_eq!(statement.statement_type, STATEMENT_V01);
    assert_eq!(
        statement.predicate_type,
        "https://cosign.sigstore.dev/attestation/vuln/v1"
    );
    assert_eq!(statement.subjects[0].name, "registry.example.com/acme/app");
    // The verified payload feeds the existing findings parser.
    let report = parse_report(payload, FormatHint::default()).unwrap();
    assert_eq!(report.count(Severity::High), 2);
    assert_eq!(report.scanned_at, v.signed_time);
}

#[test]
fn dsse_ed25519_p384_and_rsa_verify() {
    let v = keyed(&["keys/producer-ed25519.pub"])
        .verify_dsse(
            &signed("dsse/intoto-vulns.ed25519.dsse.json"),
            &image(),
            now(),
        )
        .unwrap();
    let (statement, payload) = v.statement().unwrap();
    assert_eq!(statement.statement_type, STATEMENT_V1);
    assert_eq!(
        statement.predicate_type,
        "https://in-toto.io/attestation/vulns/v0.2"
    );
    // The statement names the index, which the image belongs to.
    assert_eq!(
        format!("sha256:{}", statement.subjects[0].digest["sha256"]),
        digest("index")
    );
    assert_eq!(v.signed_time, Some(ts("2022-11-21T17:45:50.52Z")));
    assert_eq!(
        parse_report(payload, FormatHint::default())
            .unwrap()
            .findings
            .len(),
        8
    );
    for (file, key) in [
        ("dsse/cosign-vuln.p384.dsse.json", "keys/producer-p384.pub"),
        (
            "dsse/cosign-vuln.rsa3072.dsse.json",
            "keys/producer-rsa3072.pub",
        ),
    ] {
        let v = keyed(&[key])
            .verify_dsse(&signed(file), &image(), now())
            .unwrap();
        assert_eq!(v.signer, Signer::Key(key_id(key)), "{file}");
    }
    // Ed25519 does not verify a P-256 envelope and vice versa.
    assert!(matches!(
        keyed(&["keys/producer-ed25519.pub"]).verify_dsse(
            &signed("dsse/cosign-vuln.p256.dsse.json"),
            &image(),
            now()
        ),
        Err(Rejection::UnknownKey { .. })
    ));
}

#[test]
fn tampered_payload_is_a_bad_signature_of_the_named_key() {
    let r = keyed(&["keys/producer-p256.pub"])
        .verify_dsse(
            &signed("dsse/cosign-vuln.p256.tampered.dsse.json"),
            &image(),
            now(),
        )
        .unwrap_err();
    assert_eq!(
        r,
        Rejection::BadSignature {
            key: key_id("keys/producer-p256.pub")
        }
    );
    assert!(
        r.to_string().starts_with("bad signature: key sha256:"),
        "{r}"
    );
}

#[test]
fn unknown_key_is_refused_and_named() {
    let r = keyed(&["keys/producer-p256.pub", "keys/producer-ed25519.pub"])
        .verify_dsse(
            &signed("dsse/cosign-vuln.unknown-key.dsse.json"),
            &image(),
            now(),
        )
        .unwrap_err();
    assert!(matches!(r, Rejection::UnknownKey { .. }), "{r:?}");
    assert!(r.to_string().contains("not one of ci-scanner's"), "{r}");
}

#[test]
fn statement_about_another_image_is_a_subject_mismatch() {
    let other = digest("other");
    let r = keyed(&["keys/producer-p256.pub"])
        .verify_dsse(
            &signed("dsse/cosign-vuln.p256.dsse.json"),
            &DigestSet::new([other.as_str()]),
            now(),
        )
        .unwrap_err();
    assert_eq!(
        r,
        Rejection::SubjectMismatch {
            named: vec![digest("image")]
        }
    );
}

#[test]
fn scan_time_in_the_future_is_refused() {
    let r = keyed(&["keys/producer-p256.pub"])
        .verify_dsse(
            &signed("dsse/cosign-vuln.future.p256.dsse.json"),
            &image(),
            now(),
        )
        .unwrap_err();
    assert_eq!(
        r,
        Rejection::FutureTime {
            time: ts("2099-01-01T00:05:00Z"),
            now: now()
        }
    );
    // The same envelope judged in 2099 is fine.
    assert!(
        keyed(&["keys/producer-p256.pub"])
            .verify_dsse(
                &signed("dsse/cosign-vuln.future.p256.dsse.json"),
                &image(),
                ts("2099-01-01T00:01:00Z"),
            )
            .is_ok()
    );
}

#[test]
fn a_bare_envelope_has_no_log_entry() {
    let mut s = spec();
    s.public_keys = vec![pem("keys/producer-p256.pub")];
    s.trusted_root = Some(text("bundles/trusted_root.json"));
    s.require_transparency_log = true;
    let r = load("logged-only", &s)
        .verify_dsse(&signed("dsse/cosign-vuln.p256.dsse.json"), &image(), now())
        .unwrap_err();
    assert_eq!(r, Rejection::NoTlogEntry);
}

#[test]
fn cosign_simple_signing_of_a_report_manifest() {
    let producer = keyed(&["keys/producer-p256.pub"]);
    let payload = signed("cosign/simplesigning.payload.json");
    let sig = text("cosign/simplesigning.sig");
    let manifest = signed("cosign/report-manifest.json");
    let manifest_digest = format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &manifest))
    );
    assert_eq!(manifest_digest, digest("reportManifest"));
    let v = producer
        .verify_simple_signing(&payload, &sig, &manifest_digest, now())
        .unwrap();
    assert_eq!(v.signer, Signer::Key(key_id("keys/producer-p256.pub")));
    match &v.content {
        VerifiedContent::SimpleSigning(s) => {
            assert_eq!(s.manifest_digest, manifest_digest);
            assert_eq!(
                s.docker_reference.as_deref(),
                Some("registry.example.com/acme/app")
            );
        }
        other => panic!("{other:?}"),
    }
    // The signature annotation in the .sig manifest is the same signature.
    let sig_manifest: serde_json::Value =
        serde_json::from_slice(&signed("cosign/sig-manifest.json")).unwrap();
    let layer = &sig_manifest["layers"][0];
    assert_eq!(
        layer["annotations"][portcullis_core::trust::COSIGN_SIGNATURE_ANNOTATION],
        sig.as_str()
    );
    assert_eq!(
        layer["mediaType"],
        portcullis_core::trust::SIMPLE_SIGNING_MEDIA_TYPE
    );

    // Another manifest: the signature is not about it.
    let other = digest("image");
    assert_eq!(
        producer
            .verify_simple_signing(&payload, &sig, &other, now())
            .unwrap_err(),
        Rejection::DigestMismatch {
            signed: manifest_digest.clone(),
            expected: other
        }
    );
    // Another signer, or an altered payload.
    assert!(matches!(
        producer.verify_simple_signing(
            &payload,
            &text("cosign/simplesigning.unknown-key.sig"),
            &manifest_digest,
            now()
        ),
        Err(Rejection::UnknownKey { .. })
    ));
    let mut altered = payload.clone();
    let at = altered.iter().position(|b| *b == b'{').unwrap() + 1;
    altered.insert(at, b' ');
    assert!(
        producer
            .verify_simple_signing(&altered, &sig, &manifest_digest, now())
            .is_err()
    );
    assert_eq!(
        producer
            .verify_simple_signing(&payload, "", &manifest_digest, now())
            .unwrap_err(),
        Rejection::NoSignature
    );
}

fn bundle_producer(key: Option<&str>, identity: Option<KeylessIdentity>, tlog: bool) -> Producer {
    let mut s = spec();
    s.public_keys = key.into_iter().map(pem).collect();
    s.keyless = identity.into_iter().collect();
    s.trusted_root = Some(text("bundles/trusted_root.json"));
    s.require_transparency_log = tlog;
    load("bundles", &s)
}

fn github(subject: Option<&str>, reg_exp: Option<&str>) -> KeylessIdentity {
    KeylessIdentity {
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: subject.map(str::to_owned),
        subject_reg_exp: reg_exp.map(str::to_owned),
    }
}

const SUBJECT: &str = "https://github.com/acme/app/.github/workflows/scan.yml@refs/heads/main";
const SIGNED_AT: &str = "2026-11-20T10:00:00Z";

#[test]
fn key_signed_dsse_bundle_with_log_entry() {
    let producer = bundle_producer(Some("bundles/bundle-key.pub"), None, true);
    let v = producer
        .verify_bundle(
            &signed("bundles/key-dsse.sigstore.json"),
            BundleArtifact::Image(&image()),
            now(),
        )
        .unwrap();
    assert_eq!(v.signer, Signer::Key(key_id("bundles/bundle-key.pub")));
    assert_eq!(v.log_time, Some(ts(SIGNED_AT)));
    assert_eq!(v.signed_time, Some(ts("2021-08-06T17:50:50.52Z")));
    let (statement, _) = v.statement().unwrap();
    assert_eq!(
        statement.predicate_type,
        "https://cosign.sigstore.dev/attestation/vuln/v1"
    );
    // About another image: refused before any signature is checked.
    let other = digest("other");
    assert!(matches!(
        producer.verify_bundle(
            &signed("bundles/key-dsse.sigstore.json"),
            BundleArtifact::Image(&DigestSet::new([other.as_str()])),
            now()
        ),
        Err(Rejection::SubjectMismatch { .. })
    ));
    // Another key.
    let stranger = bundle_producer(Some("keys/producer-p256.pub"), None, true);
    assert!(matches!(
        stranger.verify_bundle(
            &signed("bundles/key-dsse.sigstore.json"),
            BundleArtifact::Image(&image()),
            now()
        ),
        Err(Rejection::UnknownKey { .. })
    ));
}

#[test]
fn message_signature_bundle_over_the_report_manifest() {
    // image <- report manifest <- bundle: the bundle signs the manifest bytes.
    let manifest = signed("cosign/report-manifest.json");
    let producer = bundle_producer(Some("bundles/bundle-key.pub"), None, true);
    let v = producer
        .verify_bundle(
            &signed("bundles/key-message.sigstore.json"),
            BundleArtifact::Blob(&manifest),
            now(),
        )
        .unwrap();
    assert_eq!(
        v.content,
        VerifiedContent::MessageDigest(digest("reportManifest"))
    );
    assert_eq!(v.log_time, Some(ts(SIGNED_AT)));
    assert_eq!(v.time(), Some(ts(SIGNED_AT)));
    // Given only the digest (the image-side view), the same bundle verifies.
    let report = digest("reportManifest");
    assert!(
        producer
            .verify_bundle(
                &signed("bundles/key-message.sigstore.json"),
                BundleArtifact::Image(&DigestSet::new([report.as_str()])),
                now()
            )
            .is_ok()
    );
    // A different manifest.
    let mut other = manifest.clone();
    other.push(b'\n');
    assert!(matches!(
        producer.verify_bundle(
            &signed("bundles/key-message.sigstore.json"),
            BundleArtifact::Blob(&other),
            now()
        ),
        Err(Rejection::SubjectMismatch { .. } | Rejection::BadSignature { .. })
    ));
}

#[test]
fn keyless_bundles_verify_for_the_listed_identity_only() {
    let manifest = signed("cosign/report-manifest.json");
    for identity in [
        github(Some(SUBJECT), None),
        github(
            None,
            Some(r"https://github\.com/acme/[^/]+/\.github/workflows/scan\.yml@refs/heads/main"),
        ),
    ] {
        let producer = bundle_producer(None, Some(identity), true);
        let v = producer
            .verify_bundle(
                &signed("bundles/keyless-dsse.sigstore.json"),
                BundleArtifact::Image(&image()),
                now(),
            )
            .unwrap();
        assert_eq!(
            v.signer,
            Signer::Identity {
                issuer: "https://token.actions.githubusercontent.com".into(),
                subject: SUBJECT.into()
            }
        );
        assert_eq!(v.log_time, Some(ts(SIGNED_AT)));
        let v = producer
            .verify_bundle(
                &signed("bundles/keyless-message.sigstore.json"),
                BundleArtifact::Blob(&manifest),
                now(),
            )
            .unwrap();
        assert_eq!(
            v.content,
            VerifiedContent::MessageDigest(digest("reportManifest"))
        );
    }
    // Another repository's workflow, a feature branch (the regexp is anchored),
    // another issuer: untrusted.
    for identity in [
        github(
            Some("https://github.com/acme/other/.github/workflows/scan.yml@refs/heads/main"),
            None,
        ),
        github(
            None,
            Some(r"https://github\.com/acme/app/.*@refs/heads/dev"),
        ),
        github(None, Some(r"acme/app")),
        KeylessIdentity {
            issuer: "https://accounts.google.com".into(),
            subject: Some(SUBJECT.into()),
            subject_reg_exp: None,
        },
    ] {
        let r = bundle_producer(None, Some(identity.clone()), true)
            .verify_bundle(
                &signed("bundles/keyless-dsse.sigstore.json"),
                BundleArtifact::Image(&image()),
                now(),
            )
            .unwrap_err();
        assert!(
            matches!(&r, Rejection::UntrustedIdentity { subject: Some(s), .. } if s == SUBJECT),
            "{identity:?}: {r:?}"
        );
        assert!(r.to_string().contains(SUBJECT), "{r}");
    }
    // A key-only producer does not accept a keyless signature.
    assert!(matches!(
        bundle_producer(Some("bundles/bundle-key.pub"), None, false).verify_bundle(
            &signed("bundles/keyless-dsse.sigstore.json"),
            BundleArtifact::Image(&image()),
            now()
        ),
        Err(Rejection::UntrustedIdentity { .. })
    ));
}

#[test]
fn transparency_log_requirement() {
    let bundle = signed("bundles/key-dsse-no-tlog.sigstore.json");
    let required = bundle_producer(Some("bundles/bundle-key.pub"), None, true);
    assert_eq!(
        required
            .verify_bundle(&bundle, BundleArtifact::Image(&image()), now())
            .unwrap_err(),
        Rejection::NoTlogEntry
    );
    let optional = bundle_producer(Some("bundles/bundle-key.pub"), None, false);
    let v = optional
        .verify_bundle(&bundle, BundleArtifact::Image(&image()), now())
        .unwrap();
    assert_eq!(v.log_time, None);
    assert_eq!(v.signed_time, Some(ts("2021-08-06T17:50:50.52Z")));
}

#[test]
fn a_forged_log_entry_time_is_refused() {
    // Rewrite the integrated time: the signed entry timestamp no longer verifies.
    let mut b: serde_json::Value =
        serde_json::from_slice(&signed("bundles/key-dsse.sigstore.json")).unwrap();
    b["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = "1795169000".into();
    let r = bundle_producer(Some("bundles/bundle-key.pub"), None, true)
        .verify_bundle(
            &serde_json::to_vec(&b).unwrap(),
            BundleArtifact::Image(&image()),
            now(),
        )
        .unwrap_err();
    assert!(matches!(r, Rejection::TransparencyLog(_)), "{r:?}");
}

#[test]
fn tampered_bundle_payload_is_refused() {
    let mut b: serde_json::Value =
        serde_json::from_slice(&signed("bundles/key-dsse.sigstore.json")).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(b["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let altered = String::from_utf8(payload).unwrap().replacen(
        "\"Severity\":\"HIGH\"",
        "\"Severity\":\"LOW\"",
        1,
    );
    b["dsseEnvelope"]["payload"] = b64.encode(altered).into();
    let r = bundle_producer(Some("bundles/bundle-key.pub"), None, false)
        .verify_bundle(
            &serde_json::to_vec(&b).unwrap(),
            BundleArtifact::Image(&image()),
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(
            r,
            Rejection::BadSignature { .. } | Rejection::TransparencyLog(_)
        ),
        "{r:?}"
    );
}

#[test]
fn producer_keys_are_parsed_or_refused_with_a_reason() {
    for (file, alg) in [
        ("keys/producer-p256.pub", KeyAlgorithm::EcdsaP256),
        ("keys/producer-p384.pub", KeyAlgorithm::EcdsaP384),
        ("keys/producer-ed25519.pub", KeyAlgorithm::Ed25519),
        (
            "keys/producer-rsa3072.pub",
            KeyAlgorithm::Rsa { bits: 3072 },
        ),
    ] {
        assert_eq!(PublicKey::from_pem(&text(file)).unwrap().algorithm(), alg);
    }
    assert_eq!(
        PublicKey::from_pem(&text("keys/weak-rsa1024.pub")).unwrap_err(),
        KeyError::RsaSize { bits: 1024 }
    );
    assert_eq!(
        PublicKey::from_pem(&text("keys/unsupported-secp256k1.pub")).unwrap_err(),
        KeyError::UnsupportedCurve("secp256k1".into())
    );
    let dsa = PublicKey::from_pem(&text("keys/unsupported-dsa2048.pub")).unwrap_err();
    assert_eq!(dsa, KeyError::UnsupportedType("DSA".into()));
    assert!(
        dsa.to_string().contains("DSA keys are not accepted"),
        "{dsa}"
    );

    // Loading a producer names the entry at fault and the Ready reason.
    let mut s = spec();
    s.public_keys = vec![pem("keys/producer-p256.pub"), pem("keys/weak-rsa1024.pub")];
    let e = Producer::load("p", &s, |_| None, |_| None).unwrap_err();
    assert_eq!(e.reason(), "UnparseableKey");
    assert!(
        e.to_string()
            .starts_with("publicKeys[1]: RSA key of 1024 bits"),
        "{e}"
    );
}

#[test]
fn producer_material_comes_from_secrets_and_config_maps() {
    let mut s = spec();
    s.public_keys = vec![PublicKeySource {
        pem: None,
        secret_ref: Some(PublicKeySecretRef {
            namespace: "ci".into(),
            name: "signer".into(),
            key: "cosign.pub".into(),
        }),
    }];
    s.keyless = vec![github(Some(SUBJECT), None)];
    s.trusted_root_ref = Some(TrustedRootRef {
        namespace: "portcullis-system".into(),
        name: "sigstore".into(),
        key: "trusted_root.json".into(),
    });
    let secret = |r: &PublicKeySecretRef| {
        (r.name == "signer" && r.key == "cosign.pub").then(|| text("keys/producer-p256.pub"))
    };
    let root =
        |r: &TrustedRootRef| (r.name == "sigstore").then(|| text("bundles/trusted_root.json"));
    let p = Producer::load("mixed", &s, secret, root).unwrap();
    assert!(
        p.verify_dsse(&signed("dsse/cosign-vuln.p256.dsse.json"), &image(), now())
            .is_ok()
    );
    assert!(
        p.verify_bundle(
            &signed("bundles/keyless-dsse.sigstore.json"),
            BundleArtifact::Image(&image()),
            now()
        )
        .is_ok()
    );

    let e = Producer::load("mixed", &s, |_| None, root).unwrap_err();
    assert_eq!(e.reason(), "SecretNotFound");
    assert!(e.to_string().contains("ci/signer"), "{e}");
    let e = Producer::load("mixed", &s, secret, |_| None).unwrap_err();
    assert_eq!(e.reason(), "TrustedRootNotFound");
    let e =
        Producer::load("mixed", &s, secret, |_| Some("{\"not\":\"a root\"}".into())).unwrap_err();
    assert_eq!(e.reason(), "InvalidTrustedRoot");
    s.keyless[0] = github(None, Some("(unclosed"));
    let e = Producer::load("mixed", &s, secret, root).unwrap_err();
    assert!(matches!(
        e,
        ProducerError::InvalidSubjectRegExp { index: 0, .. }
    ));
    assert_eq!(e.reason(), "InvalidSubjectRegExp");
    s.trusted_root_ref = None;
    let e = Producer::load("mixed", &s, secret, root).unwrap_err();
    assert_eq!(e.reason(), "InvalidSpec");
}

#[test]
fn the_first_producer_that_verifies_wins_else_every_reason() {
    let a = keyed(&["keys/producer-ed25519.pub"]);
    let b = keyed(&["keys/producer-p256.pub"]);
    let envelope = signed("dsse/cosign-vuln.p256.dsse.json");
    let v = verify_with_any([&a, &b], |p| p.verify_dsse(&envelope, &image(), now())).unwrap();
    assert_eq!(v.signer, Signer::Key(key_id("keys/producer-p256.pub")));
    let unknown = signed("dsse/cosign-vuln.unknown-key.dsse.json");
    let all = verify_with_any([&a, &b], |p| p.verify_dsse(&unknown, &image(), now())).unwrap_err();
    assert_eq!(all.len(), 2);
}

#[test]
fn producers_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Producer>();
}

fn flip(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let i = at % out.len();
    out[i] ^= mask;
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any flipped bit in the signed bytes (payload type, payload, signature)
    /// never verifies.
    #[test]
    fn flipping_a_signed_byte_never_verifies(at in any::<usize>(), mask in 1u8..=255, part in 0u8..3) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let env: serde_json::Value = serde_json::from_slice(&signed("dsse/cosign-vuln.p256.dsse.json")).unwrap();
        let mut env = env;
        match part {
            0 => {
                let p = b64.decode(env["payload"].as_str().unwrap()).unwrap();
                env["payload"] = b64.encode(flip(&p, at, mask)).into();
            }
            1 => {
                let s = b64.decode(env["signatures"][0]["sig"].as_str().unwrap()).unwrap();
                env["signatures"][0]["sig"] = b64.encode(flip(&s, at, mask)).into();
            }
            _ => {
                let t = env["payloadType"].as_str().unwrap().as_bytes().to_vec();
                let flipped = String::from_utf8_lossy(&flip(&t, at, mask)).into_owned();
                env["payloadType"] = flipped.into();
            }
        }
        let producer = keyed(&["keys/producer-p256.pub"]);
        prop_assert!(producer.verify_dsse(&serde_json::to_vec(&env).unwrap(), &image(), now()).is_err());
    }

    /// Any flipped bit anywhere in the envelope file either fails, or (JSON
    /// whitespace, the unsigned keyid hint, base64 alphabet variants) yields
    /// exactly the signed statement: never different content.
    #[test]
    fn flipping_any_envelope_byte_never_verifies_other_content(at in any::<usize>(), mask in 1u8..=255) {
        let original = signed("dsse/cosign-vuln.p256.dsse.json");
        let producer = keyed(&["keys/producer-p256.pub"]);
        let good = producer.verify_dsse(&original, &image(), now()).unwrap();
        if let Ok(v) = producer.verify_dsse(&flip(&original, at, mask), &image(), now()) {
            prop_assert_eq!(v.statement().map(|(_, p)| p.to_vec()), good.statement().map(|(_, p)| p.to_vec()));
        }
    }
}
