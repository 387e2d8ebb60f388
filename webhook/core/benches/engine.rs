//! Engine and normalisation benchmarks (results in BENCHMARKS.md).
//!
//! cargo bench -p portcullis-webhook --bench engine

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark set-up"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use portcullis_core::engine::{
    EvalTime, Evidence, FailureActions, GateFinding, PolicySet, ScanSummary, Subject,
};
use portcullis_core::findings::{FormatHint, parse_report};
use portcullis_core::reference::ImageRef;
use portcullis_core::severity::Severity;
use portcullis_crds::policy::{
    Exemption, ExemptionType, FindingsRequirements, IgnoredCve, MatchOperator, MatcherType,
    PolicyAction, RuleConditions, ScopeMatcher, SecurityArtifactPolicySpec, SeverityLimits,
};

/// 50 realistic rules: scoped by namespace, with limits, forbidden and ignored
/// CVEs and exemptions; about half apply to the benchmarked container.
fn rules() -> Vec<(String, SecurityArtifactPolicySpec)> {
    (0..50)
        .map(|i| {
            let spec = SecurityArtifactPolicySpec {
                action: if i % 3 == 0 {
                    PolicyAction::Deny
                } else {
                    PolicyAction::Audit
                },
                priority: i,
                enabled: true,
                description: None,
                scope: vec![ScopeMatcher {
                    matcher_type: MatcherType::Namespace,
                    key: None,
                    operator: MatchOperator::Glob,
                    values: vec![if i % 2 == 0 {
                        "prod-*".into()
                    } else {
                        format!("team-{i}-*")
                    }],
                }],
                conditions: RuleConditions {
                    max_allowed_severities: Some(SeverityLimits {
                        critical: Some(5 + i as u32),
                        high: Some(50 + i as u32),
                        medium: None,
                        low: None,
                    }),
                    forbidden_cves: (0..5).map(|j| format!("CVE-2099-{i:02}{j:03}")).collect(),
                    allowed_registries: Vec::new(),
                    fixable_only: i % 4 == 0,
                },
                ignored_cves: (0..5)
                    .map(|j| IgnoredCve {
                        id: format!("CVE-2026-{:05}", i * 7 + j),
                        expires: None,
                        reason: None,
                    })
                    .collect(),
                exemptions: vec![Exemption {
                    exemption_type: ExemptionType::Repository,
                    key: None,
                    operator: MatchOperator::StartsWith,
                    value: format!("registry.example.com/exempt-{i}/"),
                    expires: None,
                    reason: None,
                }],
                findings: FindingsRequirements {
                    maximum_age: Some("30d".into()),
                    ..Default::default()
                },
            };
            (format!("rule-{i:02}"), spec)
        })
        .collect()
}

fn findings(n: usize) -> Vec<GateFinding> {
    let levels = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Negligible,
    ];
    (0..n)
        .map(|i| GateFinding {
            id: format!("CVE-2026-{:05}", i % 800).into(),
            severity: levels[i % levels.len()],
            fixable: i % 2 == 0,
        })
        .collect()
}

fn engine(c: &mut Criterion) {
    let now: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
    let named = rules();
    let set = PolicySet::compile(named.iter().map(|(n, s)| (n.as_str(), s))).unwrap();
    let list = findings(1000);
    let summary = ScanSummary::new(list.iter().cloned(), Some(now - Duration::from_secs(3600)));
    let labels = BTreeMap::from([("app".to_string(), "checkout".to_string())]);
    let image = ImageRef::parse("registry.example.com/shop/checkout:2.1").unwrap();
    let subject = Subject {
        namespace: "prod-eu",
        kind: "Deployment",
        workload: Some("checkout"),
        pod_name: None,
        labels: &labels,
        container: Some("web"),
        image: Some(&image),
        digest: None,
    };
    let failures = FailureActions::default();
    let decision = set.evaluate(&subject, Evidence::Scanned(&summary), &failures, now);
    assert!(
        decision.applicable_rules >= 25,
        "benchmark must exercise many rules"
    );

    let mut g = c.benchmark_group("engine");
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("evaluate 50 rules x 1000 findings", |b| {
        b.iter(|| {
            set.evaluate(
                black_box(&subject),
                Evidence::Scanned(black_box(&summary)),
                &failures,
                now,
            )
        })
    });
    let at = EvalTime::at(now);
    g.bench_function("judge 50 rules x 1000 findings (no messages)", |b| {
        b.iter(|| {
            set.judge(
                black_box(&subject),
                Evidence::Scanned(black_box(&summary)),
                &failures,
                &at,
            )
        })
    });
    g.bench_function("summarise 1000 findings (once per image)", |b| {
        b.iter(|| ScanSummary::new(black_box(&list).iter().cloned(), None))
    });
    g.bench_function("compile 50 rules", |b| {
        b.iter(|| PolicySet::compile(named.iter().map(|(n, s)| (n.as_str(), s))).unwrap())
    });
    g.finish();
}

fn normalisation(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/trivy-json/trivy-centos-7-2021.json.golden");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        parse_report(&bytes, FormatHint::default())
            .unwrap()
            .findings
            .len(),
        711
    );

    let mut g = c.benchmark_group("normalise trivy-centos-7 (1.49 MB, 711 findings)");
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("portcullis parse_report (detect + normalise)", |b| {
        b.iter(|| parse_report(black_box(&bytes), FormatHint::default()).unwrap())
    });
    g.bench_function("serde_json::Value (parse only)", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, engine, normalisation);
criterion_main!(benches);
