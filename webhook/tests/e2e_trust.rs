//! Trusted evidence end to end (issue 9): real registries, images pushed with
//! skopeo, evidence signed at test time by an independent signer (PyPI
//! `cryptography`, e2e/tools/sign.py) naming the pushed digests, attached as
//! referrers, judged by the webhook binary. Whoever can push to a repository
//! must not be able to decide its verdict for a rule with trusted producers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{Registry, Webhook, fixture, kubectl, sign};

const RECENT: &str = "2026-11-20T10:00:00Z";
const OLDER: &str = "2026-11-18T10:00:00Z";
const PREDICATE: &str = "cosign-vuln-attestation/trivy-docs-cosign-vuln-predicate-alpine-3.10.json";
const VULN_TYPE: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
/// The one Critical finding of that predicate.
const CRITICAL: &str = "CVE-2021-36159";

fn rules(public_key: &str) -> String {
    let pem = public_key.replace('\n', "\n        ");
    format!(
        r#"
apiVersion: portcullis.dev/v1alpha1
kind: TrustedProducer
metadata: {{name: ci-scanner}}
spec:
  publicKeys:
  - pem: |
        {pem}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {{name: trusted-only}}
spec:
  action: Deny
  scope: [{{matcherType: Namespace, values: [payments]}}]
  conditions: {{maxAllowedSeverities: {{critical: 0}}}}
  findings: {{trustedProducers: [ci-scanner], blockUnscannedImages: true}}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {{name: trusted-vex}}
spec:
  action: Deny
  scope: [{{matcherType: Namespace, values: [vexed]}}]
  conditions: {{maxAllowedSeverities: {{critical: 0}}}}
  findings: {{trustedProducers: [ci-scanner], applyVex: true, blockUnscannedImages: true}}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {{name: any-findings}}
spec:
  action: Deny
  scope: [{{matcherType: Namespace, values: [plain]}}]
  conditions: {{maxAllowedSeverities: {{critical: 0}}}}
  findings: {{blockUnscannedImages: true}}
"#
    )
}

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        for who in ["trusted", "intruder"] {
            sign(&["keygen", dir.path().join(who).to_str().unwrap()]);
        }
        Keys { dir }
    }

    fn key(&self, who: &str) -> String {
        self.dir
            .path()
            .join(who)
            .join("key.pem")
            .display()
            .to_string()
    }

    fn public(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("trusted/key.pub")).unwrap()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A DSSE envelope about `subject` signed by `who`, scanned at `at`.
    fn envelope(&self, who: &str, subject: &str, at: &str, name: &str) -> PathBuf {
        let out = self.file(name);
        let predicate = fixture(PREDICATE);
        sign(&[
            "dsse",
            &self.key(who),
            subject,
            predicate.to_str().unwrap(),
            VULN_TYPE,
            out.to_str().unwrap(),
            "--scan-time",
            at,
        ]);
        out
    }
}

/// A plain, unsigned report with no findings.
fn clean_report() -> PathBuf {
    fixture("trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden")
}

/// A plain, unsigned report with the predicate's Critical finding (Trivy JSON).
fn critical_report(dir: &Path) -> PathBuf {
    let predicate: Value =
        serde_json::from_slice(&std::fs::read(fixture(PREDICATE)).unwrap()).unwrap();
    let path = dir.join("critical-trivy.json");
    std::fs::write(&path, predicate["scanner"]["result"].to_string()).unwrap();
    path
}

fn message(r: &Value) -> String {
    assert_eq!(r["allowed"], false, "expected a denial: {r}");
    r["status"]["message"].as_str().unwrap().to_owned()
}

async fn review(w: &Webhook, image: &str, namespace: &str) -> Value {
    let dep = kubectl(
        &["deployment", "app", &format!("--image={image}")],
        namespace,
    );
    w.review("CREATE", &dep, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_evidence_from_trusted_producers_counts() {
    let keys = Keys::new();
    let dist = Registry::distribution(None);
    let d = &dist.addr;

    // 1. A signed critical report, then a clean one pushed by anyone, dated
    //    in the future to look newest.
    let (signed, _) = dist.push_image("pay/signed:1", &[], None);
    let env = keys.envelope("trusted", &signed, RECENT, "signed.dsse.json");
    dist.attach("pay/signed:1", &env, OLDER, None);
    dist.attach(
        "pay/signed:1",
        &clean_report(),
        "2099-01-01T00:00:00Z",
        None,
    );

    // 2. Only an unsigned report.
    dist.push_image("pay/unsigned:1", &[], None);
    dist.attach("pay/unsigned:1", &clean_report(), RECENT, None);

    // 3. Signed, by a key that is not the producer's.
    let (intruder, _) = dist.push_image("pay/intruder:1", &[], None);
    let env = keys.envelope("intruder", &intruder, RECENT, "intruder.dsse.json");
    dist.attach("pay/intruder:1", &env, RECENT, None);

    // 4. A valid signed attestation copied from another image.
    dist.push_image("pay/copied:1", &[], None);
    let env = keys.envelope("trusted", &signed, RECENT, "copied.dsse.json");
    dist.attach("pay/copied:1", &env, RECENT, None);

    // 5. A signed attestation whose payload was edited afterwards (Critical
    //    turned into Low).
    let (tampered, _) = dist.push_image("pay/tampered:1", &[], None);
    let env = keys.envelope("trusted", &tampered, RECENT, "tampered.dsse.json");
    let mut envelope: Value = serde_json::from_slice(&std::fs::read(&env).unwrap()).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(b64.decode(envelope["payload"].as_str().unwrap()).unwrap())
        .unwrap()
        .replace("CRITICAL", "LOW");
    envelope["payload"] = b64.encode(payload).into();
    std::fs::write(&env, envelope.to_string()).unwrap();
    dist.attach("pay/tampered:1", &env, RECENT, None);

    // 6. A signed critical report, then three SBOMs (newer) that must not push
    //    it out; and the same for an unsigned report under a plain rule.
    let (sbom, _) = dist.push_image("pay/sbom:1", &[], None);
    let env = keys.envelope("trusted", &sbom, RECENT, "sbom.dsse.json");
    dist.attach("pay/sbom:1", &env, OLDER, None);
    let spdx = keys.file("sbom.spdx.json");
    std::fs::write(
        &spdx,
        r#"{"spdxVersion":"SPDX-2.3","name":"x","packages":[]}"#,
    )
    .unwrap();
    let cdx_sbom = keys.file("sbom.cdx.json");
    std::fs::write(
        &cdx_sbom,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"library","name":"zlib"}]}"#,
    )
    .unwrap();
    for (i, (file, ty)) in [
        (&spdx, "application/spdx+json"),
        (&spdx, "application/vnd.syft+json"),
        (&cdx_sbom, "application/vnd.cyclonedx+json"),
    ]
    .into_iter()
    .enumerate()
    {
        dist.attach_as(
            "pay/sbom:1",
            file,
            &format!("2026-11-2{}T10:00:00Z", i + 1),
            ty,
        );
    }
    dist.push_image("plain/sbom:1", &[], None);
    dist.attach(
        "plain/sbom:1",
        &critical_report(keys.dir.path()),
        OLDER,
        None,
    );
    for i in 0..3 {
        dist.attach_as(
            "plain/sbom:1",
            &cdx_sbom,
            &format!("2026-11-2{}T10:00:00Z", i + 1),
            "application/vnd.cyclonedx+json",
        );
    }

    let w = Webhook::start(
        &rules(&keys.public()),
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={d}"),
        ],
    );

    let r = review(&w, &format!("{d}/pay/signed:1"), "payments").await;
    let m = message(&r);
    assert!(
        m.contains("Image contains 1 critical CVEs") && m.contains("(rule trusted-only)"),
        "the spoofed clean report won: {m}"
    );
    // Verified once per artifact digest, not once per admission.
    let verified = |metrics: String| {
        metrics
            .lines()
            .find(|l| l.starts_with("portcullis_artifact_verifications_total{result=\"verified\"}"))
            .map(str::to_owned)
    };
    let before = verified(w.metrics().await);
    assert!(before.is_some());
    for _ in 0..3 {
        review(&w, &format!("{d}/pay/signed:1"), "payments").await;
    }
    assert_eq!(verified(w.metrics().await), before);

    for (image, why) in [
        ("pay/unsigned:1", None),
        (
            "pay/intruder:1",
            Some("signed by a key that is not one of ci-scanner's"),
        ),
        ("pay/copied:1", Some("subject mismatch")),
        ("pay/tampered:1", Some("ci-scanner")),
    ] {
        let r = review(&w, &format!("{d}/{image}"), "payments").await;
        let m = message(&r);
        assert!(
            m.contains("Vulnerability findings are attached, but none is verified for the trusted producers of rule trusted-only (ci-scanner)")
                && m.ends_with("(rule trusted-only)"),
            "{image}: {m}"
        );
        if let Some(why) = why {
            let log = w.log();
            let line = log
                .lines()
                .rev()
                .find(|l| l.contains(image) && l.contains("UntrustedFindings"))
                .unwrap_or_else(|| panic!("no decision line for {image}: {log}"));
            assert!(
                line.contains("rejected_artifacts") && line.contains(why),
                "{line}"
            );
        }
    }

    let r = review(&w, &format!("{d}/pay/sbom:1"), "payments").await;
    assert!(
        message(&r).contains("Image contains 1 critical CVEs"),
        "{r}"
    );
    let r = review(&w, &format!("{d}/plain/sbom:1"), "plain").await;
    assert!(
        message(&r).contains("Image contains 1 critical CVEs"),
        "SBOMs pushed the report out: {r}"
    );

    let metrics = w.metrics().await;
    for result in ["verified", "unknown_key", "subject_mismatch"] {
        assert!(
            metrics.contains(&format!(
                "portcullis_artifact_verifications_total{{result=\"{result}\"}}"
            )),
            "{result}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vex_counts_only_when_signed_by_a_trusted_producer() {
    let keys = Keys::new();
    let ferro = Registry::ferro();
    let f = &ferro.addr;
    let mut images = Vec::new();
    for (name, signed_vex) in [("vexed/signed:1", true), ("vexed/unsigned:1", false)] {
        let (digest, _) = ferro.push_image(name, &[], None);
        let env = keys.envelope(
            "trusted",
            &digest,
            RECENT,
            &format!("{}.dsse.json", name.replace('/', "-")),
        );
        ferro.attach(name, &env, OLDER, None);
        let vex = keys.file(&format!("{}.openvex.json", name.replace('/', "-")));
        sign(&["openvex", &digest, CRITICAL, vex.to_str().unwrap()]);
        if signed_vex {
            let env = keys.file(&format!("{}.vex.dsse.json", name.replace('/', "-")));
            sign(&[
                "dsse",
                &keys.key("trusted"),
                &digest,
                vex.to_str().unwrap(),
                "https://openvex.dev/ns",
                env.to_str().unwrap(),
            ]);
            ferro.attach(name, &env, RECENT, None);
        } else {
            ferro.attach_as(
                name,
                &vex,
                RECENT,
                "application/vnd.portcullis.findings.v1+json",
            );
        }
        images.push(name);
    }
    let w = Webhook::start(
        &rules(&keys.public()),
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={f}"),
        ],
    );
    // Signed VEX says the Critical does not apply: admitted.
    let r = review(&w, &format!("{f}/vexed/signed:1"), "vexed").await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(images.len() == 2);
    // The same VEX unsigned: nobody who can push may suppress a CVE.
    let r = review(&w, &format!("{f}/vexed/unsigned:1"), "vexed").await;
    let m = message(&r);
    assert!(m.contains("Image contains 1 critical CVEs"), "{m}");
    assert!(!m.contains("VEX from"), "{m}");
}

/// An index entry without a `platform` is still an image someone can pull:
/// judged (as `unknown`), never dropped into "no findings".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_entry_without_a_platform_is_judged() {
    support::install_crypto();
    let keys = Keys::new();
    let dist = Registry::distribution(None);
    let d = &dist.addr;
    let (manifest, _) = dist.push_image("plain/bare:1", &[], None);
    dist.attach(
        &format!("plain/bare@{manifest}"),
        &critical_report(keys.dir.path()),
        RECENT,
        None,
    );
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest,
            "size": 400
        }]
    });
    // The size must be right for the registry to accept the index.
    let size = reqwest::Client::new()
        .get(format!("http://{d}/v2/plain/bare/manifests/{manifest}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    let mut index = index;
    index["manifests"][0]["size"] = size.into();
    dist.put_manifest("plain/bare", "multi", &index).await;
    let w = Webhook::start(
        &rules(&keys.public()),
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={d}"),
        ],
    );
    let r = review(&w, &format!("{d}/plain/bare:multi"), "plain").await;
    let m = message(&r);
    assert!(
        m.starts_with(&format!(
            "{d}/plain/bare:multi (unknown): Image contains 1 critical CVEs"
        )),
        "{m}"
    );
}

/// A classic cosign signature (`sha256-<report>.sig`, simple signing) over a
/// plain report's manifest makes that report trusted evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosign_signature_over_the_report_manifest_verifies() {
    let keys = Keys::new();
    let dist = Registry::distribution(None);
    let d = &dist.addr;
    dist.push_image("pay/cosigned:1", &[], None);
    let report = dist.attach(
        "pay/cosigned:1",
        &critical_report(keys.dir.path()),
        RECENT,
        None,
    );
    let (payload, sig) = (keys.file("payload.json"), keys.file("payload.sig"));
    sign(&[
        "simplesigning",
        &keys.key("trusted"),
        &report,
        payload.to_str().unwrap(),
        sig.to_str().unwrap(),
    ]);
    let payload_bytes = std::fs::read(&payload).unwrap();
    let layer = dist.put_blob("pay/cosigned", &payload_bytes).await;
    let config = dist.put_blob("pay/cosigned", b"{}").await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": layer,
            "size": payload_bytes.len(),
            "annotations": {"dev.cosignproject.cosign/signature": std::fs::read_to_string(&sig).unwrap()}
        }]
    });
    dist.put_manifest(
        "pay/cosigned",
        &format!("{}.sig", report.replacen(':', "-", 1)),
        &manifest,
    )
    .await;
    let w = Webhook::start(
        &rules(&keys.public()),
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={d}"),
        ],
    );
    let r = review(&w, &format!("{d}/pay/cosigned:1"), "payments").await;
    assert!(
        message(&r).contains("Image contains 1 critical CVEs"),
        "{r}"
    );
}

/// Pushing many artifacts cannot push the one that counts out of view: past
/// the bound the image is LimitExceeded (denied by default), never "no
/// findings" or "untrusted".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_artifacts_fail_closed() {
    let keys = Keys::new();
    let dist = Registry::distribution(None);
    let d = &dist.addr;
    let (digest, _) = dist.push_image("pay/flooded:1", &[], None);
    let env = keys.envelope("trusted", &digest, RECENT, "flooded.dsse.json");
    dist.attach("pay/flooded:1", &env, OLDER, None);
    for i in 0..4 {
        dist.attach(
            "pay/flooded:1",
            &clean_report(),
            &format!("2026-11-2{i}T10:00:00Z"),
            None,
        );
    }
    let w = Webhook::start(
        &rules(&keys.public()),
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={d}"),
            "--max-artifacts-per-image=4",
        ],
    );
    let r = review(&w, &format!("{d}/pay/flooded:1"), "payments").await;
    let m = message(&r);
    assert!(
        m.contains("5 findings candidates attached, more than the 4 examined")
            && m.ends_with("(reason LimitExceeded)"),
        "{m}"
    );
}
