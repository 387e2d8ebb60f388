//! Cold-path benchmark: admissions of Pods with 1, 5 and 10 distinct
//! uncached images (by tag) through a proxy adding 20 ms to every registry
//! round trip, on distribution 2.8 (no referrers API: the `sha256-` tag) and
//! ferro-oci-server (referrers API). The webhook (the real binary) first
//! admits a 10-image warm-up Pod per registry, so connections are open (and
//! what it learns about the registry is known) before anything is measured;
//! then `--samples` Pods per size, each with images never seen. Reports every
//! sample, the median, and the registry requests per image the proxy saw.
//!
//! `--trusted` adds the same with a TrustedProducer in force and rules that
//! name it: evidence is a DSSE envelope signed at run time by
//! e2e/tools/sign.py (PyPI cryptography); and plain unsigned reports with
//! the producer in force (signatures over the report are looked for).
//!
//!     cargo build --release -p portcullis-webhook --bins --examples
//!     target/release/examples/bench_cold [--samples 5] [--trusted]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "../tests/support/mod.rs"]
mod support;

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "bench_common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{DSSE_TYPE, FINDINGS_TYPE, Rng, Seeder, grype_report};
use serde_json::json;
use support::{Fault, FaultProxy, POLICIES, Registry, Webhook, fixture, sign};

const RTT: Duration = Duration::from_millis(20);
const SIZES: [usize; 3] = [1, 5, 10];
const PREDICATE: &str = "cosign-vuln-attestation/trivy-docs-cosign-vuln-predicate-alpine-3.10.json";
const VULN_TYPE: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence {
    /// Plain reports, rules without trusted producers.
    Plain,
    /// DSSE envelopes signed by the producer the rules trust.
    Signed,
    /// Plain reports, a producer in force and trusted by the rules.
    PlainWithProducer,
}

fn trusted_policies(public_key: &str) -> String {
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
metadata: {{name: deny-critical}}
spec:
  action: Deny
  priority: 10
  conditions: {{maxAllowedSeverities: {{critical: 0}}}}
  findings: {{trustedProducers: [ci-scanner]}}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {{name: audit-high}}
spec:
  action: Audit
  conditions: {{maxAllowedSeverities: {{high: 0}}}}
  findings: {{trustedProducers: [ci-scanner]}}
"#
    )
}

async fn seed(seeder: &Seeder, repo: &str, evidence: Evidence, keys: &Path, rng: &mut Rng) {
    let pushed = seeder.image(repo, "1.0", repo).await;
    match evidence {
        Evidence::Plain | Evidence::PlainWithProducer => {
            let report = grype_report(rng, 200, 60_000, 5_000);
            seeder
                .attach(
                    repo,
                    &pushed,
                    &report,
                    FINDINGS_TYPE,
                    "application/json",
                    "2026-11-20T10:00:00Z",
                )
                .await;
        }
        Evidence::Signed => {
            let out = keys.join(format!("{}.dsse.json", repo.replace('/', "_")));
            sign(&[
                "dsse",
                keys.join("ci/key.pem").to_str().unwrap(),
                &pushed.digest,
                fixture(PREDICATE).to_str().unwrap(),
                VULN_TYPE,
                out.to_str().unwrap(),
                "--scan-time",
                "2026-11-20T10:00:00Z",
            ]);
            let envelope = std::fs::read(&out).unwrap();
            seeder
                .attach(
                    repo,
                    &pushed,
                    &envelope,
                    DSSE_TYPE,
                    DSSE_TYPE,
                    "2026-11-20T10:00:00Z",
                )
                .await;
        }
    }
}

/// The answer is a judgement on the findings (a registry failure would
/// make the figure meaningless): unsigned reports under a rule with trusted
/// producers are `UntrustedFindings`; anything else is a threshold verdict.
fn check(r: &serde_json::Value, evidence: Evidence) {
    let text = r.to_string();
    for failure in [
        "RegistryUnavailable",
        "RegistryAuth",
        "RegistryThrottled",
        "ImageNotFound",
        "MalformedFindings",
        "deadline",
    ] {
        assert!(!text.contains(failure), "lookup failed: {r}");
    }
    match evidence {
        Evidence::PlainWithProducer => assert!(text.contains("UntrustedFindings"), "{r}"),
        _ => assert!(
            r["allowed"] == false || text.contains("(rule audit-high)"),
            "{r}"
        ),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let samples: usize = args
        .iter()
        .position(|a| a == "--samples")
        .map_or(5, |i| args[i + 1].parse().unwrap());
    let mut modes = vec![Evidence::Plain];
    if args.iter().any(|a| a == "--trusted") {
        modes.extend([Evidence::Signed, Evidence::PlainWithProducer]);
    }
    let keys = tempfile::tempdir().unwrap();
    sign(&["keygen", keys.path().join("ci").to_str().unwrap()]);
    let public = std::fs::read_to_string(keys.path().join("ci/key.pub")).unwrap();
    let target_ms = 4.0 * RTT.as_secs_f64() * 1000.0 + 15.0;
    println!(
        "cold path: {} ms added per registry round trip; target 4 round trips + 15 ms = {target_ms:.0} ms; {samples} samples per size",
        RTT.as_millis()
    );
    let mut rng = Rng(0xC01D);
    for evidence in modes {
        for ferro in [false, true] {
            let registry = if ferro {
                Registry::ferro()
            } else {
                Registry::distribution(None)
            };
            let label = if ferro {
                "ferro-oci-server (referrers API)"
            } else {
                "distribution 2.8 (no referrers API: sha256- tag)"
            };
            let seeder = Seeder::new(&registry.addr, !ferro);
            for i in 0..10 {
                seed(
                    &seeder,
                    &format!("warmup/img{i}"),
                    evidence,
                    keys.path(),
                    &mut rng,
                )
                .await;
            }
            for s in 0..samples {
                for n in SIZES {
                    for i in 0..n {
                        seed(
                            &seeder,
                            &format!("cold{s}x{n}/img{i}"),
                            evidence,
                            keys.path(),
                            &mut rng,
                        )
                        .await;
                    }
                }
            }
            let proxy = FaultProxy::start(&registry.addr).await;
            proxy.inject("/v2/", Fault::Delay(RTT));
            let p = proxy.addr.clone();
            let policies = match evidence {
                Evidence::Plain => POLICIES.to_owned(),
                _ => trusted_policies(&public),
            };
            let webhook = Webhook::start(
                &policies,
                None,
                &[
                    "--allow-destination=127.0.0.1/32",
                    &format!("--insecure-registry={p}"),
                    "--log=warn",
                ],
            );
            let pod = |name: &str, images: Vec<String>| {
                let containers: Vec<_> = images
                    .iter()
                    .enumerate()
                    .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
                    .collect();
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop"}, "spec": {"containers": containers}})
            };
            // Warm-up: connections to the proxy, and whatever the webhook
            // learns about the registry.
            let warm = pod(
                "warmup",
                (0..10).map(|i| format!("{p}/warmup/img{i}:1.0")).collect(),
            );
            let started = Instant::now();
            let r = webhook.review("CREATE", &warm, None).await;
            check(&r, evidence);
            println!(
                "{label}, evidence {evidence:?}: warm-up (10 images) {:.1} ms",
                started.elapsed().as_secs_f64() * 1000.0
            );
            for n in SIZES {
                let mut took = Vec::new();
                let mut per_image = Vec::new();
                for s in 0..samples {
                    let images = (0..n)
                        .map(|i| format!("{p}/cold{s}x{n}/img{i}:1.0"))
                        .collect();
                    let pod = pod(&format!("cold-{s}-{n}"), images);
                    let before: usize = proxy.seen.lock().unwrap().values().sum();
                    let started = Instant::now();
                    let r = webhook.review("CREATE", &pod, None).await;
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    let requests: usize =
                        proxy.seen.lock().unwrap().values().sum::<usize>() - before;
                    check(&r, evidence);
                    took.push(ms);
                    per_image.push(requests as f64 / n as f64);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let med = median(&took);
                println!(
                    "  {n:>2} images: median {med:>6.1} ms ({:.2} round trips; {}) samples [{}] ms; registry requests per image {}",
                    med / (RTT.as_secs_f64() * 1000.0),
                    if med <= target_ms { "meets" } else { "misses" },
                    took.iter()
                        .map(|t| format!("{t:.1}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    per_image
                        .iter()
                        .map(|t| format!("{t:.1}"))
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
}
