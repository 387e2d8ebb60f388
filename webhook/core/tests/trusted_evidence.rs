//! Which evidence each rule reads (issue 9): rules without trusted producers
//! read the newest attached report, as before; rules with them read only
//! artifacts verified for one of their producers, newest by signed time, and
//! apply VEX only from those producers. Nobody can win "newest" with a time
//! in the future.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use portcullis_core::engine::{
    Action, Artifact, ArtifactSet, Decision, Evidence, FailureActions, FailureClass, GateFinding,
    PolicySet, ReasonCode, ScanSummary, Subject,
};
use portcullis_core::reference::ImageRef;
use portcullis_core::severity::Severity::{self, *};
use portcullis_crds::SecurityArtifactPolicySpec;
use proptest::prelude::*;

const NOW: &str = "2026-11-23T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn ago(hours: i64) -> Option<Timestamp> {
    Some(now() - jiff::SignedDuration::from_hours(hours))
}

fn summary(findings: &[(&str, Severity)]) -> Arc<ScanSummary> {
    Arc::new(ScanSummary::new(
        findings.iter().map(|(id, s)| GateFinding {
            id: (*id).into(),
            severity: *s,
            fixable: true,
        }),
        None,
    ))
}

fn artifact(
    digest: &str,
    findings: &[(&str, Severity)],
    claimed: Option<Timestamp>,
    verified: &[(&str, Option<Timestamp>)],
) -> Artifact {
    Artifact {
        digest: Arc::from(digest),
        summary: summary(findings),
        claimed_time: claimed,
        verified: verified.iter().map(|(p, t)| (Arc::from(*p), *t)).collect(),
        vex: Vec::new(),
    }
}

fn policies(rules: &[(&str, &str)]) -> PolicySet {
    let specs: Vec<(String, SecurityArtifactPolicySpec)> = rules
        .iter()
        .map(|(n, y)| (n.to_string(), serde_saphyr::from_str(y).unwrap()))
        .collect();
    PolicySet::compile(specs.iter().map(|(n, s)| (n.as_str(), s))).unwrap()
}

fn judge(set: &PolicySet, evidence: &ArtifactSet) -> Decision {
    let labels = BTreeMap::new();
    let image = ImageRef::parse("registry.example.com/shop/payments:4.2").unwrap();
    let subject = Subject {
        namespace: "payments",
        kind: "Deployment",
        workload: Some("payments"),
        pod_name: None,
        labels: &labels,
        container: Some("app"),
        image: Some(&image),
        digest: None,
    };
    set.evaluate(
        &subject,
        Evidence::Artifacts(evidence),
        &FailureActions::default(),
        now(),
    )
}

const TRUSTED: &str = "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nfindings: {trustedProducers: [ci-scanner], blockUnscannedImages: true}";
const UNTRUSTED: &str = "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}";

/// The attack of the issue: a signed critical report, then a clean one
/// pushed by someone who can push, dated in the future to look newest.
#[test]
fn a_newer_unsigned_clean_report_cannot_hide_the_signed_one() {
    let set = ArtifactSet {
        artifacts: vec![
            artifact(
                "sha256:signed",
                &[("CVE-2024-1", Critical)],
                ago(48),
                &[("ci-scanner", ago(48))],
            ),
            artifact(
                "sha256:spoof",
                &[],
                Some("2099-01-01T00:00:00Z".parse().unwrap()),
                &[],
            ),
        ],
        rejected: Vec::new(),
    };
    let d = judge(&policies(&[("trusted", TRUSTED)]), &set);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.reason(), ReasonCode::SeverityThreshold);
    // The future date does not win for unverified rules either: it is
    // unusable, and the signed report (older, but real) decides.
    let d = judge(&policies(&[("any", UNTRUSTED)]), &set);
    assert_eq!(d.action, Action::Deny, "{d:?}");
    // Without the future date, rules without producers read the newest claim.
    let mut plain = set.clone();
    plain.artifacts[1].claimed_time = ago(1);
    assert_eq!(
        judge(&policies(&[("any", UNTRUSTED)]), &plain).action,
        Action::Allow
    );
    assert_eq!(
        judge(&policies(&[("trusted", TRUSTED)]), &plain).action,
        Action::Deny
    );
}

#[test]
fn newest_is_by_signed_time_for_rules_with_producers() {
    let set = ArtifactSet {
        artifacts: vec![
            // Claims to be newest, but its signed scan is older.
            artifact("sha256:old-scan", &[], ago(1), &[("ci-scanner", ago(72))]),
            artifact(
                "sha256:new-scan",
                &[("CVE-2024-1", Critical)],
                ago(50),
                &[("ci-scanner", ago(2))],
            ),
        ],
        rejected: Vec::new(),
    };
    assert_eq!(
        judge(&policies(&[("trusted", TRUSTED)]), &set).action,
        Action::Deny
    );
    assert_eq!(
        judge(&policies(&[("any", UNTRUSTED)]), &set).action,
        Action::Allow
    );
}

#[test]
fn only_unverified_evidence_is_untrusted_findings() {
    let unsigned = ArtifactSet {
        artifacts: vec![artifact("sha256:a", &[], ago(1), &[])],
        rejected: Vec::new(),
    };
    let d = judge(&policies(&[("trusted", TRUSTED)]), &unsigned);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.reason(),
        ReasonCode::Failure(FailureClass::UntrustedFindings)
    );
    assert!(
        d.deciding()
            .unwrap()
            .message
            .contains("none is verified for the trusted producers of rule trusted (ci-scanner)"),
        "{d:?}"
    );
    // Signed by someone else, or tampered: rejected, still untrusted.
    let rejected = ArtifactSet {
        artifacts: Vec::new(),
        rejected: vec![(
            Arc::from("sha256:b"),
            "signed by a key that is not one of ci-scanner's".into(),
        )],
    };
    let d = judge(&policies(&[("trusted", TRUSTED)]), &rejected);
    assert_eq!(
        d.reason(),
        ReasonCode::Failure(FailureClass::UntrustedFindings)
    );
    // Without blockUnscannedImages the class's configured action applies:
    // audit by default, with its own reason code.
    let lenient = "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nfindings: {trustedProducers: [ci-scanner]}";
    let d = judge(&policies(&[("lenient", lenient)]), &unsigned);
    assert_eq!(d.action, Action::Audit);
    assert_eq!(
        d.reason(),
        ReasonCode::Failure(FailureClass::UntrustedFindings)
    );
    // Nothing attached at all is NoFindings, as before.
    let d = judge(&policies(&[("trusted", TRUSTED)]), &ArtifactSet::default());
    assert_eq!(d.reason(), ReasonCode::Failure(FailureClass::NoFindings));
}

#[test]
fn vex_suppresses_only_for_rules_that_apply_it_from_their_producers() {
    let mut a = artifact(
        "sha256:r",
        &[("CVE-2024-1", Critical), ("CVE-2024-2", Critical)],
        ago(2),
        &[("ci-scanner", ago(2))],
    );
    // Positions in the summary's order (sorted by ID): CVE-2024-1 is 0.
    a.vex = vec![
        (Arc::from("ci-scanner"), Arc::from(vec![0u32])),
        (Arc::from("somebody"), Arc::from(vec![1u32])),
    ];
    let set = ArtifactSet {
        artifacts: vec![a],
        rejected: Vec::new(),
    };
    let with_vex = "action: Deny\nconditions: {maxAllowedSeverities: {critical: 1}}\nfindings: {trustedProducers: [ci-scanner], applyVex: true}";
    assert_eq!(
        judge(&policies(&[("vex", with_vex)]), &set).action,
        Action::Allow
    );
    let strict = "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nfindings: {trustedProducers: [ci-scanner], applyVex: true}";
    let d = judge(&policies(&[("vex", strict)]), &set);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.deciding().unwrap().message,
        "Image contains 1 critical CVEs, which is more than the allowed count of: 0 (VEX from ci-scanner suppressed 1 findings)"
    );
    assert_eq!(&*d.deciding().unwrap().cves[0], "CVE-2024-2");
    // Without applyVex nothing is suppressed.
    let d = judge(&policies(&[("t", TRUSTED)]), &set);
    assert!(
        d.deciding()
            .unwrap()
            .message
            .starts_with("Image contains 2 critical")
    );
}

fn gen_artifact() -> impl Strategy<Value = Artifact> {
    (
        prop::collection::vec((0u8..20, 0usize..6), 0..6),
        prop::option::of(-100i64..100),
        prop::bool::ANY,
        prop::option::of(-100i64..100),
    )
        .prop_map(|(findings, claimed, signed, signed_at)| {
            let findings: Vec<(String, Severity)> = findings
                .into_iter()
                .map(|(id, s)| (format!("CVE-{id}"), Severity::ALL[s]))
                .collect();
            let refs: Vec<(&str, Severity)> =
                findings.iter().map(|(i, s)| (i.as_str(), *s)).collect();
            let at = |h: i64| Some(now() - jiff::SignedDuration::from_hours(h));
            artifact(
                "sha256:x",
                &refs,
                claimed.and_then(at),
                &if signed {
                    vec![("ci-scanner", signed_at.and_then(at))]
                } else {
                    vec![]
                },
            )
        })
}

proptest! {
    /// Adding an artifact that no trusted producer verified never loosens a
    /// decision for a rule with trusted producers: whatever anyone pushes.
    #[test]
    fn an_unverified_artifact_never_loosens_a_trusted_rule(
        existing in prop::collection::vec(gen_artifact(), 0..4),
        mut pushed in gen_artifact(),
        block in prop::bool::ANY,
        limit in 0u32..3,
    ) {
        pushed.verified.clear();
        let rule = format!(
            "action: Deny\nconditions: {{maxAllowedSeverities: {{high: {limit}}}}}\nfindings: {{trustedProducers: [ci-scanner], blockUnscannedImages: {block}, maximumAge: 30d}}"
        );
        let set = policies(&[("trusted", &rule)]);
        let before = ArtifactSet { artifacts: existing.clone(), rejected: Vec::new() };
        let mut after = before.clone();
        after.artifacts.push(pushed);
        let (b, a) = (judge(&set, &before), judge(&set, &after));
        prop_assert!(a.action >= b.action, "before {b:?}\nafter {a:?}");
    }
}
