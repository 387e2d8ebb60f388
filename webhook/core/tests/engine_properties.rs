//! Invariants users rely on, checked over generated rules and findings:
//! an exemption or an ignored CVE never makes a decision stricter, a finding
//! never makes it looser, and the order rules arrive in never matters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails loudly"
)]

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::date;
use portcullis_core::engine::{
    Decision, Evidence, FailureActions, FailureClass, GateFinding, PolicySet, ScanSummary, Subject,
};
use portcullis_core::reference::ImageRef;
use portcullis_core::severity::Severity;
use portcullis_crds::policy::{
    Exemption, ExemptionType, FindingsRequirements, IgnoredCve, MatchOperator, MatcherType,
    PolicyAction, RuleConditions, ScopeMatcher, SecurityArtifactPolicySpec, SeverityLimits,
};
use proptest::prelude::*;

const IDS: [&str; 6] = ["CVE-1", "CVE-2", "CVE-3", "CVE-4", "CVE-5", "CVE-6"];

fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().expect("time")
}

fn severity() -> impl Strategy<Value = Severity> {
    prop::sample::select(Severity::ALL.to_vec())
}

fn finding() -> impl Strategy<Value = GateFinding> {
    (
        prop::sample::select(IDS.to_vec()),
        severity(),
        any::<bool>(),
    )
        .prop_map(|(id, severity, fixable)| GateFinding {
            id: id.into(),
            severity,
            fixable,
        })
}

fn ignored() -> impl Strategy<Value = IgnoredCve> {
    (
        prop::sample::select(IDS.to_vec()),
        prop::option::of(-3i16..3),
    )
        .prop_map(|(id, offset)| IgnoredCve {
            id: id.into(),
            // Around today, so expired and active entries both occur.
            expires: offset.map(|d| date(2026, 11, 23).saturating_add(jiff::Span::new().days(d))),
            reason: None,
        })
}

fn exemption() -> impl Strategy<Value = Exemption> {
    (0usize..4, prop::option::of(-2i16..2)).prop_map(|(kind, offset)| {
        let (exemption_type, value) = match kind {
            0 => (ExemptionType::Namespace, "prod-eu"),
            1 => (ExemptionType::Namespace, "other"),
            2 => (ExemptionType::Registry, "docker.io"),
            _ => (ExemptionType::Workload, "checkout"),
        };
        Exemption {
            exemption_type,
            key: None,
            operator: MatchOperator::Equals,
            value: value.into(),
            expires: offset.map(|d| date(2026, 11, 23).saturating_add(jiff::Span::new().days(d))),
            reason: None,
        }
    })
}

fn rule() -> impl Strategy<Value = SecurityArtifactPolicySpec> {
    (
        prop::bool::ANY,
        0i32..4,
        prop::option::of((
            prop::option::of(0u32..3),
            prop::option::of(0u32..3),
            prop::option::of(0u32..4),
            prop::option::of(0u32..5),
        )),
        prop::collection::vec(prop::sample::select(IDS.to_vec()), 0..3),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["prod-*", "dev", "*"])),
        prop::collection::vec(ignored(), 0..3),
        prop::collection::vec(exemption(), 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(
                deny,
                priority,
                limits,
                forbidden,
                fixable_only,
                block,
                ns,
                ignored_cves,
                exemptions,
                registries,
            )| {
                let limits = limits
                    .map(|(critical, high, medium, low)| SeverityLimits {
                        critical,
                        high,
                        medium,
                        low,
                    })
                    .filter(|l| *l != SeverityLimits::default());
                let has_condition = limits.is_some() || !forbidden.is_empty() || registries;
                SecurityArtifactPolicySpec {
                    action: if deny {
                        PolicyAction::Deny
                    } else {
                        PolicyAction::Audit
                    },
                    priority,
                    enabled: true,
                    description: None,
                    scope: ns
                        .map(|v| ScopeMatcher {
                            matcher_type: MatcherType::Namespace,
                            key: None,
                            operator: MatchOperator::Glob,
                            values: vec![v.into()],
                        })
                        .into_iter()
                        .collect(),
                    conditions: RuleConditions {
                        max_allowed_severities: limits,
                        forbidden_cves: forbidden.into_iter().map(String::from).collect(),
                        allowed_registries: if registries {
                            vec!["ghcr.io".into()]
                        } else {
                            Vec::new()
                        },
                        fixable_only,
                    },
                    ignored_cves,
                    exemptions,
                    findings: FindingsRequirements {
                        maximum_age: None,
                        // Every rule needs a condition; block-only rules are valid too.
                        block_unscanned_images: block || !has_condition,
                        unsupported_registries: Vec::new(),
                        ..Default::default()
                    },
                }
            },
        )
}

fn rules() -> impl Strategy<Value = Vec<SecurityArtifactPolicySpec>> {
    prop::collection::vec(rule(), 1..6)
}

fn evidence_kind() -> impl Strategy<Value = Option<FailureClass>> {
    prop::option::weighted(0.2, prop::sample::select(FailureClass::ALL.to_vec()))
}

struct World {
    labels: BTreeMap<String, String>,
    image: ImageRef,
}

fn world() -> World {
    World {
        labels: BTreeMap::new(),
        image: ImageRef::parse("nginx:1.27").expect("image"),
    }
}

fn decide(
    specs: &[SecurityArtifactPolicySpec],
    findings: &[GateFinding],
    failure: Option<FailureClass>,
) -> Decision {
    let named: Vec<(String, SecurityArtifactPolicySpec)> = specs
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, s)| (format!("rule-{i}"), s))
        .collect();
    decide_named(&named, findings, failure)
}

fn decide_named(
    named: &[(String, SecurityArtifactPolicySpec)],
    findings: &[GateFinding],
    failure: Option<FailureClass>,
) -> Decision {
    let set = PolicySet::compile(named.iter().map(|(n, s)| (n.as_str(), s)))
        .expect("generated rules are valid");
    let w = world();
    let subject = Subject {
        namespace: "prod-eu",
        kind: "Deployment",
        workload: Some("checkout"),
        pod_name: None,
        labels: &w.labels,
        container: Some("web"),
        image: Some(&w.image),
        digest: None,
    };
    let summary = ScanSummary::new(findings.iter().cloned(), Some(now()));
    let evidence = match failure {
        Some(class) => Evidence::Failed { class, detail: "" },
        None => Evidence::Scanned(&summary),
    };
    set.evaluate(&subject, evidence, &FailureActions::default(), now())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn an_exemption_never_makes_a_decision_stricter(
        specs in rules(),
        findings in prop::collection::vec(finding(), 0..12),
        failure in evidence_kind(),
        target in any::<prop::sample::Index>(),
        extra in exemption(),
    ) {
        let before = decide(&specs, &findings, failure);
        let mut exempted = specs.clone();
        let i = target.index(exempted.len());
        exempted[i].exemptions.push(extra);
        let after = decide(&exempted, &findings, failure);
        prop_assert!(after.action <= before.action, "{:?} -> {:?}", before.action, after.action);
    }

    #[test]
    fn an_ignored_cve_never_makes_a_decision_stricter(
        specs in rules(),
        findings in prop::collection::vec(finding(), 0..12),
        target in any::<prop::sample::Index>(),
        extra in ignored(),
    ) {
        let before = decide(&specs, &findings, None);
        let mut ignoring = specs.clone();
        let i = target.index(ignoring.len());
        ignoring[i].ignored_cves.push(extra);
        let after = decide(&ignoring, &findings, None);
        prop_assert!(after.action <= before.action, "{:?} -> {:?}", before.action, after.action);
    }

    #[test]
    fn a_finding_never_makes_a_decision_looser(
        specs in rules(),
        findings in prop::collection::vec(finding(), 0..12),
        extra in finding(),
    ) {
        let before = decide(&specs, &findings, None);
        let mut more = findings.clone();
        more.push(extra);
        let after = decide(&specs, &more, None);
        prop_assert!(after.action >= before.action, "{:?} -> {:?}", before.action, after.action);
    }

    #[test]
    fn rule_order_never_changes_the_decision(
        specs in rules(),
        findings in prop::collection::vec(finding(), 0..12),
        failure in evidence_kind(),
        seed in any::<u64>(),
    ) {
        // Names follow the rules, so shuffling reorders the input, not the identities.
        let named: Vec<(String, SecurityArtifactPolicySpec)> =
            specs.iter().cloned().enumerate().map(|(i, s)| (format!("rule-{i}"), s)).collect();
        let mut shuffled = named.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(
            decide_named(&named, &findings, failure),
            decide_named(&shuffled, &findings, failure)
        );
    }
}
