//! Interim local demo: the sample policies of `config/samples` judge a handful
//! of workloads whose images carry real scanner outputs from `../shared/fixtures`,
//! and the decisions are printed as a table. The registry and the HTTPS webhook
//! join this demo with the webhook issue; the engine and messages are the real ones.
//!
//! cargo run -p portcullis-webhook --example demo

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jiff::{SignedDuration, Timestamp};
use portcullis_crds::SecurityArtifactPolicy;
use portcullis_webhook::engine::{
    Action, ContainerDecision, Evidence, FailureActions, FailureClass, PolicySet, ScanSummary,
    Subject, aggregate,
};
use portcullis_webhook::findings::{FormatHint, parse_report};
use portcullis_webhook::reference::ImageRef;

struct Scenario {
    workload: &'static str,
    namespace: &'static str,
    image: &'static str,
    /// A fixture report, or none attached.
    report: Option<&'static str>,
    /// Use the report's own (old) scan time instead of "scanned yesterday".
    real_scan_time: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        workload: "cart",
        namespace: "shop-dev",
        image: "registry.example.com/shop/cart:1.0",
        report: Some("trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden"),
        real_scan_time: false,
    },
    Scenario {
        workload: "ruby-api",
        namespace: "shop-dev",
        image: "registry.example.com/shop/ruby-api:3.0",
        report: Some("grype-json/grype-chainguard-ruby-test.json"),
        real_scan_time: false,
    },
    Scenario {
        workload: "payments",
        namespace: "prod-eu",
        image: "registry.example.com/shop/payments:4.2",
        report: Some("trivy-json/trivy-debian-buster.json.golden"),
        real_scan_time: false,
    },
    Scenario {
        workload: "metallb",
        namespace: "prod-eu",
        image: "registry.example.com/infra/metallb:0.16",
        report: Some(
            "cosign-vuln-attestation/sluice-obs-metallb-configmaptocrs.trivy_vuln.intoto.json",
        ),
        real_scan_time: false,
    },
    Scenario {
        workload: "batch",
        namespace: "prod-eu",
        image: "registry.example.com/shop/batch:0.9",
        report: None,
        real_scan_time: false,
    },
    Scenario {
        workload: "legacy",
        namespace: "prod-eu",
        image: "registry.example.com/shop/legacy:7",
        report: Some("trivy-json/trivy-alpine-310.json.golden"),
        real_scan_time: true,
    },
    Scenario {
        workload: "tooling",
        namespace: "shop-dev",
        image: "quay.io/someone/tool:latest",
        report: Some("trivy-json/trivy-alpine-310.json.golden"),
        real_scan_time: false,
    },
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let fixtures = std::env::var_os("PORTCULLIS_FIXTURES")
        .map_or_else(|| root.join("../shared/fixtures"), PathBuf::from);
    let policies = load_policies(&root.join("config/samples"))?;
    let set = PolicySet::compile(policies.iter().map(|(n, s)| (n.as_str(), s)))
        .map_err(|e| e.to_string())?;
    println!(
        "Policies from config/samples: {}",
        policies
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let now = Timestamp::now();
    let failures = FailureActions::default();
    let labels = BTreeMap::new();

    println!(
        "\n{:<10} {:<9} {:<42} {:<6} {:<19} {:<28} MESSAGE",
        "WORKLOAD", "NAMESPACE", "IMAGE", "ACTION", "REASON", "RULE"
    );
    let mut all = Vec::new();
    for s in SCENARIOS {
        let image = ImageRef::parse(s.image).map_err(|e| e.to_string())?;
        let summary = match s.report {
            Some(path) => {
                let bytes =
                    std::fs::read(fixtures.join(path)).map_err(|e| format!("{path}: {e}"))?;
                let report = parse_report(&bytes, FormatHint::default())
                    .map_err(|e| format!("{path}: {e}"))?;
                let at = if s.real_scan_time {
                    report.scanned_at
                } else {
                    Some(now - SignedDuration::from_hours(24))
                };
                Some(ScanSummary::from_findings(&report.findings, at))
            }
            None => None,
        };
        let evidence = match &summary {
            Some(summary) => Evidence::Scanned(summary),
            None => Evidence::Failed {
                class: FailureClass::NoFindings,
                detail: "",
            },
        };
        let subject = Subject {
            namespace: s.namespace,
            kind: "Deployment",
            workload: Some(s.workload),
            pod_name: None,
            labels: &labels,
            container: s.workload,
            image: &image,
            digest: None,
        };
        let decision = set.evaluate(&subject, evidence, &failures, now);
        let deciding = decision.deciding();
        println!(
            "{:<10} {:<9} {:<42} {:<6} {:<19} {:<28} {}",
            s.workload,
            s.namespace,
            image.as_str(),
            decision.action.as_str(),
            decision.reason().as_str(),
            deciding.and_then(|v| v.rule.as_deref()).unwrap_or("-"),
            deciding.map_or("", |v| v.message.as_str()),
        );
        all.push(ContainerDecision {
            container: s.workload.into(),
            image: image.to_string(),
            decision,
        });
    }
    let answer = aggregate(&all);
    println!(
        "\nAs one admission request with all of these containers: allowed={} ({})",
        answer.allowed,
        answer.action.as_str()
    );
    if let Some(message) = &answer.message {
        println!("denied: {message}");
    }
    for w in &answer.warnings {
        println!("warning: {w}");
    }
    if answer.action != Action::Deny {
        return Err("expected the demo's denied workloads to deny the request".into());
    }
    Ok(())
}

fn load_policies(
    dir: &Path,
) -> Result<Vec<(String, portcullis_crds::SecurityArtifactPolicySpec)>, String> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !text.contains("kind: SecurityArtifactPolicy") {
            continue;
        }
        let policy: SecurityArtifactPolicy =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = policy.metadata.name.clone().unwrap_or_default();
        out.push((name, policy.spec));
    }
    Ok(out)
}
