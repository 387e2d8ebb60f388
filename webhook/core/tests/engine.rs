//! The gating engine, scenario by scenario: every field of a
//! `SecurityArtifactPolicy` and every step of DESIGN §3.4–3.6.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails loudly"
)]

use std::collections::BTreeMap;

use jiff::Timestamp;
use portcullis_core::engine::{
    Action, AnswerOptions, ContainerDecision, Decision, Evidence, FailureActions, FailureClass,
    GateFinding, PolicySet, ReasonCode, ScanSummary, Subject, TargetEvidence, aggregate,
    aggregate_with, limits,
};
use portcullis_core::reference::ImageRef;
use portcullis_core::severity::Severity::{self, *};
use portcullis_crds::SecurityArtifactPolicySpec;

const NOW: &str = "2026-11-23T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("time")
}

fn spec(yaml: &str) -> SecurityArtifactPolicySpec {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("bad rule yaml: {e}\n{yaml}"))
}

fn policies(rules: &[(&str, &str)]) -> PolicySet {
    let specs: Vec<(String, SecurityArtifactPolicySpec)> = rules
        .iter()
        .map(|(n, y)| (n.to_string(), spec(y)))
        .collect();
    PolicySet::compile(specs.iter().map(|(n, s)| (n.as_str(), s))).expect("rules compile")
}

/// A container in context; fields are public so scenarios change only what they test.
#[derive(Clone)]
struct Pod {
    namespace: String,
    kind: String,
    workload: Option<String>,
    pod_name: Option<String>,
    labels: BTreeMap<String, String>,
    container: String,
    image: ImageRef,
    digest: Option<String>,
}

fn pod(image: &str) -> Pod {
    Pod {
        namespace: "prod-eu".into(),
        kind: "Deployment".into(),
        workload: Some("checkout".into()),
        pod_name: Some("checkout-7d9f".into()),
        labels: [
            ("app".to_string(), "checkout".to_string()),
            ("tier".into(), "frontend".into()),
        ]
        .into(),
        container: "web".into(),
        image: ImageRef::parse(image).expect("image"),
        digest: Some(
            "sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
        ),
    }
}

impl Pod {
    fn subject(&self) -> Subject<'_> {
        Subject {
            namespace: &self.namespace,
            kind: &self.kind,
            workload: self.workload.as_deref(),
            pod_name: self.pod_name.as_deref(),
            labels: &self.labels,
            container: Some(&self.container),
            image: Some(&self.image),
            digest: self.digest.as_deref(),
        }
    }
}

fn scan(findings: &[(&str, Severity, bool)]) -> ScanSummary {
    scan_at(findings, Some(now() - jiff::SignedDuration::from_hours(24)))
}

fn scan_at(findings: &[(&str, Severity, bool)], at: Option<Timestamp>) -> ScanSummary {
    ScanSummary::new(
        findings.iter().map(|(id, severity, fixable)| GateFinding {
            id: (*id).into(),
            severity: *severity,
            fixable: *fixable,
        }),
        at,
    )
}

fn judge(set: &PolicySet, pod: &Pod, summary: &ScanSummary) -> Decision {
    set.evaluate(
        &pod.subject(),
        Evidence::Scanned(summary),
        &FailureActions::default(),
        now(),
    )
}

fn judge_at(set: &PolicySet, pod: &Pod, summary: &ScanSummary, at: &str) -> Decision {
    set.evaluate(
        &pod.subject(),
        Evidence::Scanned(summary),
        &FailureActions::default(),
        at.parse().expect("time"),
    )
}

fn fail(set: &PolicySet, pod: &Pod, class: FailureClass) -> Decision {
    set.evaluate(
        &pod.subject(),
        Evidence::Failed { class, detail: "" },
        &FailureActions::default(),
        now(),
    )
}

/// Findings as (ID, severity, fixable).
type Findings = &'static [(&'static str, Severity, bool)];

const DEFAULT_AUDIT: &str = "action: Audit\nconditions: {maxAllowedSeverities: {high: 0}}";

// ---------------------------------------------------------------- conditions

#[test]
fn default_audit_rule_flags_high_and_critical_with_the_reference_message() {
    let set = policies(&[("default-audit", DEFAULT_AUDIT)]);
    let p = pod("nginx:1.27");
    let d = judge(
        &set,
        &p,
        &scan(&[
            ("CVE-1", High, true),
            ("CVE-2", Critical, false),
            ("CVE-3", Medium, true),
        ]),
    );
    assert_eq!(d.action, Action::Audit);
    assert_eq!(d.reason(), ReasonCode::SeverityThreshold);
    let v = d.deciding().expect("violation");
    assert_eq!(
        v.message,
        "Image contains 2 high or higher CVEs, which is more than the allowed count of: 0"
    );
    assert_eq!(
        v.cves.iter().map(|c| &**c).collect::<Vec<_>>(),
        ["CVE-2", "CVE-1"]
    );
    assert_eq!(
        d.message(p.image.as_str()).as_deref(),
        Some(
            "docker.io/library/nginx:1.27: Image contains 2 high or higher CVEs, which is more than the allowed count of: 0 (rule default-audit)"
        )
    );
    assert_eq!(
        judge(&set, &p, &scan(&[("CVE-3", Medium, true)])).action,
        Action::Allow
    );
    assert_eq!(judge(&set, &p, &scan(&[])).action, Action::Allow);
}

#[test]
fn severity_counts_are_cumulative_and_per_finding() {
    let set = policies(&[(
        "r",
        "action: Deny\nconditions: {maxAllowedSeverities: {high: 2, medium: 3}}",
    )]);
    let p = pod("nginx");
    let cases: &[(Findings, Action, &str)] = &[
        (
            &[("C", Critical, true), ("H", High, true)],
            Action::Allow,
            "",
        ),
        // A critical counts toward "high": 3 > 2.
        (
            &[("C", Critical, true), ("H", High, true), ("H2", High, true)],
            Action::Deny,
            "Image contains 3 high or higher CVEs, which is more than the allowed count of: 2",
        ),
        // One CVE in two packages is two findings.
        (
            &[("C", Critical, true), ("H", High, true), ("H", High, false)],
            Action::Deny,
            "Image contains 3 high or higher CVEs",
        ),
        // medium: 3 counts medium, high and critical together.
        (
            &[
                ("H", High, true),
                ("M1", Medium, true),
                ("M2", Medium, true),
                ("M3", Medium, true),
            ],
            Action::Deny,
            "Image contains 4 medium or higher CVEs, which is more than the allowed count of: 3",
        ),
        // Low findings are not counted by a medium limit.
        (
            &[
                ("M1", Medium, true),
                ("L1", Low, true),
                ("L2", Low, true),
                ("L3", Low, true),
            ],
            Action::Allow,
            "",
        ),
    ];
    for (findings, action, message) in cases {
        let d = judge(&set, &p, &scan(findings));
        assert_eq!(d.action, *action, "{findings:?}");
        if !message.is_empty() {
            assert!(
                d.deciding()
                    .expect("violation")
                    .message
                    .starts_with(message),
                "{:?}",
                d.deciding()
            );
        }
    }
}

#[test]
fn the_walk_reports_the_most_severe_condition() {
    let set = policies(&[(
        "r",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0, low: 0}}",
    )]);
    let d = judge(
        &set,
        &pod("nginx"),
        &scan(&[("L", Low, true), ("C", Critical, true)]),
    );
    assert_eq!(
        d.deciding().expect("v").message,
        "Image contains 1 critical CVEs, which is more than the allowed count of: 0"
    );
    let d = judge(&set, &pod("nginx"), &scan(&[("L", Low, true)]));
    assert_eq!(
        d.deciding().expect("v").message,
        "Image contains 1 low or higher CVEs, which is more than the allowed count of: 0"
    );
}

#[test]
fn negligible_and_unknown_never_count_but_can_be_forbidden() {
    let set = policies(&[
        (
            "limits",
            "action: Deny\nconditions: {maxAllowedSeverities: {low: 0}}",
        ),
        (
            "forbidden",
            "action: Audit\nconditions: {forbiddenCves: [CVE-2024-3094]}",
        ),
    ]);
    let p = pod("nginx");
    let d = judge(
        &set,
        &p,
        &scan(&[("N", Negligible, true), ("U", Unknown, true)]),
    );
    assert_eq!(d.action, Action::Allow);
    let d = judge(&set, &p, &scan(&[("CVE-2024-3094", Unknown, false)]));
    assert_eq!(
        (d.action, d.reason()),
        (Action::Audit, ReasonCode::ForbiddenCve)
    );
    assert_eq!(
        d.deciding().expect("v").message,
        "Image contains forbidden CVEs: CVE-2024-3094"
    );
}

#[test]
fn fixable_only_counts_findings_with_a_fix() {
    let set = policies(&[(
        "r",
        "action: Deny\nconditions: {maxAllowedSeverities: {high: 0}, fixableOnly: true}",
    )]);
    let p = pod("nginx");
    assert_eq!(
        judge(
            &set,
            &p,
            &scan(&[("H", High, false), ("C", Critical, false)])
        )
        .action,
        Action::Allow
    );
    let d = judge(
        &set,
        &p,
        &scan(&[("H", High, false), ("C", Critical, true)]),
    );
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.deciding().expect("v").message,
        "Image contains 1 fixable high or higher CVEs, which is more than the allowed count of: 0"
    );
    assert_eq!(d.deciding().expect("v").cves.len(), 1);
}

#[test]
fn allowed_registries_gate_any_image_even_without_findings() {
    let set = policies(&[(
        "registries",
        "action: Deny\nconditions: {allowedRegistries: ['*.azurecr.io', docker.io]}",
    )]);
    let d = judge(&set, &pod("quay.io/org/app:1"), &scan(&[]));
    assert_eq!(
        (d.action, d.reason()),
        (Action::Deny, ReasonCode::RegistryNotAllowed)
    );
    assert_eq!(
        d.deciding().expect("v").message,
        "Image registry quay.io is not in the allowed registries: *.azurecr.io, docker.io"
    );
    // Also when the registry cannot be reached at all.
    assert_eq!(
        fail(
            &set,
            &pod("quay.io/org/app:1"),
            FailureClass::RegistryUnavailable
        )
        .reason(),
        ReasonCode::RegistryNotAllowed
    );
    for ok in [
        "myacr.azurecr.io/team/app:1",
        "nginx",
        "index.docker.io/library/nginx",
    ] {
        assert_eq!(
            judge(&set, &pod(ok), &scan(&[])).action,
            Action::Allow,
            "{ok}"
        );
    }
}

// --------------------------------------------------------------------- scope

#[test]
fn scope_matchers_operators_and_combinations() {
    let p = pod("myacr.azurecr.io/team/checkout:2.1");
    let high = scan(&[("H", High, true)]);
    let cases: &[(&str, bool)] = &[
        ("[]", true),
        ("[{matcherType: Namespace, values: ['prod-*']}]", true),
        (
            "[{matcherType: Namespace, values: ['staging-*', 'prod-eu']}]",
            true,
        ),
        ("[{matcherType: Namespace, values: ['staging-*']}]", false),
        (
            "[{matcherType: Namespace, operator: Equals, values: [prod]}]",
            false,
        ),
        (
            "[{matcherType: Namespace, operator: StartsWith, values: [prod]}]",
            true,
        ),
        (
            "[{matcherType: Namespace, operator: EndsWith, values: ['-eu']}]",
            true,
        ),
        (
            "[{matcherType: Namespace, operator: Contains, values: ['od-e']}]",
            true,
        ),
        (
            "[{matcherType: Namespace, operator: NotEquals, values: [kube-system, prod-eu]}]",
            false,
        ),
        (
            "[{matcherType: Namespace, operator: NotEquals, values: [kube-system, monitoring]}]",
            true,
        ),
        ("[{matcherType: Pod, values: ['*7d9f']}]", true),
        (
            "[{matcherType: Workload, operator: Equals, values: [checkout]}]",
            true,
        ),
        (
            "[{matcherType: Workload, operator: Equals, values: [billing]}]",
            false,
        ),
        (
            "[{matcherType: Kind, operator: Equals, values: [Pod, Deployment]}]",
            true,
        ),
        (
            "[{matcherType: Kind, operator: Equals, values: [CronJob]}]",
            false,
        ),
        ("[{matcherType: Label, key: tier, values: [front*]}]", true),
        ("[{matcherType: Label, key: missing, values: ['*']}]", false),
        (
            "[{matcherType: Label, key: missing, operator: NotEquals, values: [x]}]",
            true,
        ),
        (
            "[{matcherType: Container, operator: Equals, values: [web]}]",
            true,
        ),
        (
            "[{matcherType: Image, values: ['myacr.azurecr.io/team/*:2.*']}]",
            true,
        ),
        ("[{matcherType: Registry, values: ['*.azurecr.io']}]", true),
        (
            "[{matcherType: Repository, operator: Equals, values: [myacr.azurecr.io/team/checkout]}]",
            true,
        ),
        (
            "[{matcherType: Repository, operator: Equals, values: [team/checkout]}]",
            false,
        ),
        // Matchers are ANDed.
        (
            "[{matcherType: Namespace, values: ['prod-*']}, {matcherType: Container, operator: Equals, values: [sidecar]}]",
            false,
        ),
        (
            "[{matcherType: Namespace, values: ['prod-*']}, {matcherType: Label, key: app, operator: Equals, values: [checkout]}]",
            true,
        ),
    ];
    for (scope, applies) in cases {
        let set = policies(&[(
            "r",
            &format!(
                "action: Deny\nconditions: {{maxAllowedSeverities: {{high: 0}}}}\nscope: {scope}"
            ),
        )]);
        let d = judge(&set, &p, &high);
        assert_eq!(d.action == Action::Deny, *applies, "scope {scope}");
        assert_eq!(d.applicable_rules == 1, *applies, "scope {scope}");
    }
}

#[test]
fn disabled_rules_do_nothing() {
    let set = policies(&[(
        "r",
        "action: Deny\nenabled: false\nconditions: {maxAllowedSeverities: {high: 0}}",
    )]);
    let d = judge(&set, &pod("nginx"), &scan(&[("C", Critical, true)]));
    assert_eq!((d.action, d.applicable_rules), (Action::Allow, 0));
}

// ---------------------------------------------------- exemptions and expiry

#[test]
fn exemptions_of_every_type_skip_the_rule() {
    let p = pod("myacr.azurecr.io/team/checkout:2.1");
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let cases: &[(&str, bool)] = &[
        ("{type: Registry, value: myacr.azurecr.io}", true),
        (
            "{type: Registry, operator: EndsWith, value: .azurecr.io}",
            true,
        ),
        ("{type: Registry, value: docker.io}", false),
        (
            "{type: Repository, value: myacr.azurecr.io/team/checkout}",
            true,
        ),
        (
            "{type: Repository, operator: StartsWith, value: myacr.azurecr.io/team/}",
            true,
        ),
        (&format!("{{type: ImageDigest, value: '{digest}'}}"), true),
        (
            "{type: ImageDigest, value: 'sha256:2222222222222222222222222222222222222222222222222222222222222222'}",
            false,
        ),
        ("{type: Namespace, value: prod-eu}", true),
        (
            "{type: Namespace, operator: Glob, value: 'staging-*'}",
            false,
        ),
        ("{type: Workload, value: checkout}", true),
        ("{type: Pod, operator: StartsWith, value: checkout-}", true),
        ("{type: Label, key: app, value: checkout}", true),
        ("{type: Label, key: app, value: billing}", false),
    ];
    for (exemption, exempt) in cases {
        let set = policies(&[(
            "r",
            &format!(
                "action: Deny\nconditions: {{maxAllowedSeverities: {{high: 0}}}}\nexemptions: [{exemption}]"
            ),
        )]);
        let d = judge(&set, &p, &scan(&[("C", Critical, true)]));
        assert_eq!(d.action == Action::Allow, *exempt, "exemption {exemption}");
    }
}

#[test]
fn exemptions_and_ignored_cves_end_at_the_end_of_their_utc_day() {
    let set = policies(&[
        (
            "exempt",
            "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nexemptions: [{type: Namespace, value: prod-eu, expires: 2026-12-31, reason: INC-42}]",
        ),
        (
            "ignore",
            "action: Audit\nconditions: {maxAllowedSeverities: {high: 0}}\nignoredCves: [{id: CVE-1, expires: 2026-12-31}]",
        ),
    ]);
    let p = pod("nginx");
    let s = scan_at(&[("CVE-1", Critical, true)], Some(now()));
    let before = judge_at(&set, &p, &s, "2026-12-31T23:59:59Z");
    assert_eq!(before.action, Action::Allow, "{before:?}");
    let after = judge_at(&set, &p, &s, "2027-01-01T00:00:00Z");
    assert_eq!(after.action, Action::Deny);
    // Both rules fire once expired; the Deny decides, the Audit is still reported.
    assert_eq!(after.violations.len(), 2);
    assert_eq!(after.violations[1].rule.as_deref(), Some("ignore"));
}

#[test]
fn ignored_cves_are_removed_before_counting_and_from_forbidden() {
    let set = policies(&[(
        "r",
        "action: Deny\nconditions: {maxAllowedSeverities: {high: 1}, forbiddenCves: [CVE-F]}\nignoredCves: [{id: CVE-A}, {id: CVE-F, reason: not reachable}]",
    )]);
    let p = pod("nginx");
    // CVE-A in two packages is ignored in both; CVE-F is forbidden but ignored.
    let d = judge(
        &set,
        &p,
        &scan(&[
            ("CVE-A", High, true),
            ("CVE-A", Critical, true),
            ("CVE-B", High, true),
            ("CVE-F", Low, true),
        ]),
    );
    assert_eq!(d.action, Action::Allow, "{d:?}");
    let d = judge(
        &set,
        &p,
        &scan(&[
            ("CVE-A", High, true),
            ("CVE-B", High, true),
            ("CVE-C", High, true),
        ]),
    );
    let v = d.deciding().expect("v");
    assert_eq!(
        v.message,
        "Image contains 2 high or higher CVEs, which is more than the allowed count of: 1"
    );
    assert_eq!(
        v.cves.iter().map(|c| &**c).collect::<Vec<_>>(),
        ["CVE-B", "CVE-C"]
    );
}

#[test]
fn unsupported_registries_pass_untouched() {
    let set = policies(&[(
        "r",
        "action: Deny\nconditions: {maxAllowedSeverities: {high: 0}}\nfindings: {blockUnscannedImages: true, unsupportedRegistries: [docker.io, 'mcr.microsoft.com']}",
    )]);
    let d = judge(&set, &pod("nginx"), &scan(&[("C", Critical, true)]));
    assert_eq!((d.action, d.applicable_rules), (Action::Allow, 0));
    // No rule applies, so a registry failure needs no findings either.
    assert_eq!(
        fail(&set, &pod("nginx"), FailureClass::RegistryUnavailable).action,
        Action::Allow
    );
    assert_eq!(
        fail(&set, &pod("ghcr.io/x/y"), FailureClass::NoFindings).action,
        Action::Deny
    );
}

// ------------------------------------------------------- findings required

#[test]
fn block_unscanned_images_applies_the_rule_action_with_no_findings() {
    let set = policies(&[
        (
            "block",
            "action: Deny\nfindings: {blockUnscannedImages: true}\nscope: [{matcherType: Namespace, values: ['prod-*']}]",
        ),
        ("audit", DEFAULT_AUDIT),
    ]);
    let d = fail(&set, &pod("nginx"), FailureClass::NoFindings);
    assert_eq!(
        (d.action, d.reason()),
        (Action::Deny, ReasonCode::Failure(FailureClass::NoFindings))
    );
    assert_eq!(d.deciding().and_then(|v| v.rule.as_deref()), Some("block"));
    let mut dev = pod("nginx");
    dev.namespace = "dev".into();
    // Without blockUnscannedImages, and with NoFindings configured to Allow, nothing happens.
    assert_eq!(
        fail(&set, &dev, FailureClass::NoFindings).action,
        Action::Allow
    );
    // A clean scan is not "no findings".
    assert_eq!(judge(&set, &pod("nginx"), &scan(&[])).action, Action::Allow);
}

#[test]
fn findings_older_than_maximum_age_count_as_missing() {
    let set = policies(&[(
        "fresh",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nfindings: {maximumAge: 30d, blockUnscannedImages: true}",
    )]);
    let p = pod("nginx");
    let days_ago = |d: i64| Some(now() - jiff::SignedDuration::from_hours(24 * d));
    assert_eq!(
        judge(&set, &p, &scan_at(&[], days_ago(29))).action,
        Action::Allow
    );
    let d = judge(&set, &p, &scan_at(&[], days_ago(31)));
    assert_eq!(
        (d.action, d.reason()),
        (
            Action::Deny,
            ReasonCode::Failure(FailureClass::StaleFindings)
        )
    );
    assert!(
        d.deciding()
            .expect("v")
            .message
            .contains("older than the maximum age of 30d")
    );
    // Unknown scan time cannot be shown to be fresh.
    assert_eq!(
        judge(&set, &p, &scan_at(&[], None)).reason(),
        ReasonCode::Failure(FailureClass::StaleFindings)
    );
    // Stale critical findings are not counted: the artifact counts as missing.
    let without_block = policies(&[(
        "fresh",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nfindings: {maximumAge: 30d}",
    )]);
    assert_eq!(
        judge(
            &without_block,
            &p,
            &scan_at(&[("C", Critical, true)], days_ago(31))
        )
        .action,
        Action::Allow
    );
    // ...unless the StaleFindings failure class is configured to act.
    let mut strict = FailureActions::default();
    strict.set(FailureClass::StaleFindings, Action::Audit);
    let d = without_block.evaluate(
        &p.subject(),
        Evidence::Scanned(&scan_at(&[], days_ago(31))),
        &strict,
        now(),
    );
    assert_eq!(
        (d.action, d.reason()),
        (
            Action::Audit,
            ReasonCode::Failure(FailureClass::StaleFindings)
        )
    );
}

#[test]
fn failure_classes_apply_their_configured_action_with_reason_codes() {
    let set = policies(&[("audit", DEFAULT_AUDIT)]);
    let p = pod("nginx");
    let d = fail(&set, &p, FailureClass::RegistryUnavailable);
    assert_eq!(
        (d.action, d.reason()),
        (
            Action::Audit,
            ReasonCode::Failure(FailureClass::RegistryUnavailable)
        )
    );
    assert_eq!(
        d.message(p.image.as_str()).as_deref(),
        Some(
            "docker.io/library/nginx:latest: The registry is unavailable (reason RegistryUnavailable)"
        )
    );
    let mut actions = FailureActions::default();
    actions.set(FailureClass::RegistryThrottled, Action::Deny);
    let d = set.evaluate(
        &p.subject(),
        Evidence::Failed {
            class: FailureClass::RegistryThrottled,
            detail: "429 Too Many Requests",
        },
        &actions,
        now(),
    );
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.deciding().expect("v").message,
        "The registry is throttling requests: 429 Too Many Requests"
    );
    for class in FailureClass::ALL {
        let expected = FailureActions::default().get(class);
        assert_eq!(fail(&set, &p, class).action, expected, "{class}");
        // With no applicable rule, nothing is needed from the registry.
        assert_eq!(
            fail(&PolicySet::default(), &p, class).action,
            Action::Allow,
            "{class}"
        );
    }
}

// ------------------------------------------------------ priority and actions

#[test]
fn priority_orders_what_is_reported_and_deny_always_denies() {
    let high = scan(&[("H", High, true), ("C", Critical, true)]);
    let p = pod("nginx");
    // Two audits: the stronger priority is reported.
    let set = policies(&[
        (
            "weak",
            "action: Audit\npriority: 50\nconditions: {maxAllowedSeverities: {high: 0}}",
        ),
        (
            "strong",
            "action: Audit\npriority: 10\nconditions: {maxAllowedSeverities: {high: 0}}",
        ),
    ]);
    assert_eq!(
        judge(&set, &p, &high)
            .deciding()
            .and_then(|v| v.rule.as_deref()),
        Some("strong")
    );
    // Equal priority: Deny beats Audit.
    let set = policies(&[
        (
            "a-audit",
            "action: Audit\npriority: 10\nconditions: {maxAllowedSeverities: {high: 0}}",
        ),
        (
            "b-deny",
            "action: Deny\npriority: 10\nconditions: {maxAllowedSeverities: {high: 0}}",
        ),
    ]);
    let d = judge(&set, &p, &high);
    assert_eq!(
        (d.action, d.deciding().and_then(|v| v.rule.as_deref())),
        (Action::Deny, Some("b-deny"))
    );
    // An Audit rule violated at Critical does not override a Deny rule violated at High.
    let set = policies(&[
        (
            "audit-critical",
            "action: Audit\npriority: 1\nconditions: {maxAllowedSeverities: {critical: 0}}",
        ),
        (
            "deny-high",
            "action: Deny\npriority: 100\nconditions: {maxAllowedSeverities: {high: 1}}",
        ),
    ]);
    let d = judge(&set, &p, &high);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.deciding().and_then(|v| v.rule.as_deref()),
        Some("deny-high")
    );
    assert_eq!(d.violations[1].rule.as_deref(), Some("audit-critical"));
}

// ------------------------------------------------------------- aggregation

#[test]
fn per_container_decisions_aggregate_into_one_answer() {
    let set = policies(&[
        (
            "deny-critical",
            "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}",
        ),
        ("audit-high", DEFAULT_AUDIT),
    ]);
    let container = |name: &str, image: &str, findings: &[(&str, Severity, bool)]| {
        let mut p = pod(image);
        p.container = name.into();
        ContainerDecision {
            container: name.into(),
            image: p.image.to_string(),
            decision: judge(&set, &p, &scan(findings)),
        }
    };
    let clean = container("clean", "nginx:1", &[("M", Medium, true)]);
    let audited = container("audited", "redis:7", &[("CVE-H", High, true)]);
    let denied = container("denied", "mysql:8", &[("CVE-C", Critical, true)]);

    let a = aggregate(std::slice::from_ref(&clean));
    assert!(a.allowed && a.message.is_none() && a.warnings.is_empty());

    let a = aggregate(&[clean.clone(), audited.clone()]);
    assert!(a.allowed);
    assert_eq!(a.action, Action::Audit);
    assert_eq!(
        a.warnings,
        [
            "portcullis audited docker.io/library/redis:7 (rule audit-high): Image contains 1 high or higher CVEs, which is more than the allowed count of: 0: CVE-H"
        ]
    );

    let a = aggregate(&[clean, audited, denied]);
    assert!(!a.allowed);
    assert_eq!(
        a.message.as_deref(),
        Some(
            "docker.io/library/mysql:8: Image contains 1 critical CVEs, which is more than the allowed count of: 0 (rule deny-critical)"
        )
    );
    // The denied image also violated the audit rule; audits still warn.
    assert_eq!(a.warnings.len(), 2);
}

#[test]
fn answers_stay_inside_api_server_limits() {
    let set = policies(&[(
        "r",
        "action: Deny\nconditions: {maxAllowedSeverities: {low: 0}}",
    )]);
    let findings: Vec<(String, Severity, bool)> = (0..500)
        .map(|i| (format!("CVE-2026-{i:05}"), High, true))
        .collect();
    let refs: Vec<(&str, Severity, bool)> = findings
        .iter()
        .map(|(i, s, f)| (i.as_str(), *s, *f))
        .collect();
    let summary = scan(&refs);
    let containers: Vec<ContainerDecision> = (0..200)
        .map(|i| {
            let p = pod(&format!(
                "registry.example.com/team/service-{i}:{}",
                "v".repeat(100)
            ));
            ContainerDecision {
                container: format!("c{i}"),
                image: p.image.to_string(),
                decision: judge(&set, &p, &summary),
            }
        })
        .collect();
    let a = aggregate(&containers);
    assert!(!a.allowed);
    let message = a.message.expect("message");
    assert!(message.len() <= limits::MAX_MESSAGE_BYTES && message.ends_with("..."));
    assert!(containers[0].decision.deciding().expect("v").cves.len() <= 10);

    let audit = policies(&[(
        "r",
        "action: Audit\nconditions: {maxAllowedSeverities: {low: 0}}",
    )]);
    let audited: Vec<ContainerDecision> = containers
        .iter()
        .map(|c| {
            let p = pod(&c.image);
            ContainerDecision {
                decision: judge(&audit, &p, &summary),
                ..c.clone()
            }
        })
        .collect();
    let a = aggregate(&audited);
    assert!(a.allowed);
    assert_eq!(a.warnings.len(), limits::MAX_WARNINGS);
    assert!(
        a.warnings
            .iter()
            .all(|w| w.len() <= limits::MAX_WARNING_BYTES)
    );
    assert_eq!(
        a.warnings.last().map(String::as_str),
        Some("portcullis: 191 more audited violations not shown")
    );
}

// ------------------------------------------------------------- validation

#[test]
fn invalid_rules_are_refused_with_the_reason() {
    let compile = |yaml: &str| {
        PolicySet::compile([("bad", &spec(yaml))])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert!(
        compile("action: Deny\nconditions: {}")
            .is_err_and(|e| e.contains("at least one condition"))
    );
    assert!(
        compile("action: Deny\nconditions: {maxAllowedSeverities: {}}")
            .is_err_and(|e| e.contains("critical, high"))
    );
    assert!(
        compile("action: Deny\nconditions: {forbiddenCves: [X]}\nfindings: {maximumAge: 1y}")
            .is_err_and(|e| e.contains("maximumAge"))
    );
    assert!(compile("action: Deny\nconditions: {forbiddenCves: [X]}\nscope: [{matcherType: Label, values: [a]}]").is_err_and(|e| e.contains("needs a key")));
    assert!(compile("action: Deny\nconditions: {forbiddenCves: [X]}").is_ok());
}

// ------------------------------------------- hardening: identity and bypasses

/// Every spelling containerd reads as the registry a rule names falls under
/// that rule (issue 8: `Registry.Example.Com/app:1` escaped a Deny rule).
#[test]
fn registry_scope_cannot_be_escaped_by_case_port_or_numeric_tricks() {
    let set = policies(&[(
        "deny-internal",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nscope: [{matcherType: Registry, values: [registry.example.com, localhost, 'reg.local:5000', '127.0.0.1:5000']}]",
    )]);
    let critical = scan(&[("C", Critical, true)]);
    for image in [
        "Registry.Example.Com/app:1",
        "REGISTRY.EXAMPLE.COM/app:1",
        "registry.example.com:443/app:1",
        "LOCALHOST/app:1",
        "LocalHost/shop/payments:4.2",
        "Reg.Local:5000/app",
        "127.1:5000/app",
        "0x7f.0.0.1:5000/app",
        "2130706433:5000/app",
    ] {
        assert_eq!(
            judge(&set, &pod(image), &critical).action,
            Action::Deny,
            "{image}"
        );
    }
    // Neither Docker Hub nor look-alike hosts are in scope.
    for image in [
        "nginx",
        "registry.example.com.evil.net/app",
        "reg.local:5001/app",
    ] {
        assert_eq!(
            judge(&set, &pod(image), &critical).action,
            Action::Allow,
            "{image}"
        );
    }
}

#[test]
fn star_in_a_registry_pattern_never_crosses_a_dot() {
    // Before: `mcr.microsoft.com*` matched `mcr.microsoft.com.evil.net`, so
    // an exemption meant for Microsoft's registry exempted anyone's.
    let set = policies(&[(
        "r",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nexemptions: [{type: Registry, operator: Glob, value: 'mcr.microsoft.com*'}, {type: Registry, operator: Glob, value: '*.azurecr.io'}]",
    )]);
    let critical = scan(&[("C", Critical, true)]);
    for (image, exempt) in [
        ("mcr.microsoft.com/dotnet/runtime:8.0", true),
        ("mcr.microsoft.com.evil.net/dotnet/runtime:8.0", false),
        ("team.azurecr.io/app:1", true),
        ("evil-azurecr.io/app:1", false),
        ("team.azurecr.io.evil.net/app:1", false),
        ("a.b.azurecr.io/app:1", false),
    ] {
        let d = judge(&set, &pod(image), &critical);
        assert_eq!(d.action == Action::Allow, exempt, "{image}");
    }
}

#[test]
fn registry_operators_that_would_cross_the_host_boundary_are_refused() {
    let compile = |yaml: &str| {
        PolicySet::compile([("bad", &spec(yaml))])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let base = "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\n";
    for bad in [
        "exemptions: [{type: Registry, operator: StartsWith, value: mcr.microsoft.com}]",
        "exemptions: [{type: Registry, operator: Contains, value: azurecr}]",
        "exemptions: [{type: Registry, operator: EndsWith, value: azurecr.io}]",
        "exemptions: [{type: Repository, operator: Contains, value: evil.net/app}]",
        "scope: [{matcherType: Registry, operator: Equals, values: ['*.azurecr.io']}]",
        "scope: [{matcherType: Registry, values: ['registry.example.com/team']}]",
        "conditions: {allowedRegistries: ['bad host']}",
        "findings: {unsupportedRegistries: ['host:99999']}",
    ] {
        let yaml = if bad.starts_with("conditions") {
            format!("action: Deny\n{bad}")
        } else {
            format!("{base}{bad}")
        };
        let e = compile(&yaml).expect_err(bad);
        assert!(e.contains("rule bad: "), "{e}");
    }
    let e = compile(&format!(
        "{base}scope: [{{matcherType: Repository, values: [ok.io/a, 'x y/z']}}]"
    ))
    .expect_err("bad value");
    assert!(e.contains("scope[0].values[1]"), "{e}");
}

#[test]
fn an_ignored_cve_listed_twice_is_subtracted_once() {
    let set = policies(&[(
        "r",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nignoredCves: [{id: CVE-A}, {id: CVE-A, expires: 2030-01-01}]",
    )]);
    // Two critical findings; only CVE-A is ignored, so one remains.
    let d = judge(
        &set,
        &pod("nginx"),
        &scan(&[("CVE-A", Critical, true), ("CVE-B", Critical, true)]),
    );
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.deciding().expect("violation").message,
        "Image contains 1 critical CVEs, which is more than the allowed count of: 0"
    );
}

/// The engine owns the InvalidReference verdict: rules whose scope the rest
/// of the subject decides are weighed; scope on the unreadable image counts
/// as matching.
#[test]
fn an_invalid_reference_is_judged_against_the_rules_that_could_cover_it() {
    let set = policies(&[
        (
            "prod-only",
            "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nscope: [{matcherType: Namespace, values: ['prod-*']}]",
        ),
        (
            "acr-only",
            "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nscope: [{matcherType: Registry, values: ['*.azurecr.io']}]\nexemptions: [{type: Registry, value: myacr.azurecr.io}]",
        ),
    ]);
    let p = pod("nginx");
    let subject = |namespace: &'static str| Subject {
        namespace,
        image: None,
        digest: None,
        ..p.subject()
    };
    let judge_invalid = |s: &Subject<'_>| {
        set.evaluate_unidentified(
            s,
            FailureClass::InvalidReference,
            "image reference \"Bad:Name\": ...",
            &FailureActions::default(),
            now(),
        )
    };
    let d = judge_invalid(&subject("prod-eu"));
    assert_eq!((d.action, d.applicable_rules), (Action::Deny, 2));
    assert_eq!(
        d.reason(),
        ReasonCode::Failure(FailureClass::InvalidReference)
    );
    // Out of the namespace rule's scope, the registry rule still might apply.
    let d = judge_invalid(&subject("dev"));
    assert_eq!((d.action, d.applicable_rules), (Action::Deny, 1));
    // No rule at all: nothing to enforce.
    let none = policies(&[]);
    let d = none.evaluate_unidentified(
        &subject("dev"),
        FailureClass::InvalidReference,
        "",
        &FailureActions::default(),
        now(),
    );
    assert_eq!(d.action, Action::Allow);
}

#[test]
fn too_many_images_is_limit_exceeded_and_denied_by_default() {
    let set = policies(&[("audit", DEFAULT_AUDIT)]);
    let p = pod("nginx");
    let s = Subject {
        container: None,
        image: None,
        digest: None,
        ..p.subject()
    };
    let d = set.evaluate_unidentified(
        &s,
        FailureClass::LimitExceeded,
        "40000 distinct images, more than the 64 judged per request",
        &FailureActions::default(),
        now(),
    );
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.message("Pod checkout"),
        Some("Pod checkout: There is more to judge than the webhook's limits allow: 40000 distinct images, more than the 64 judged per request (reason LimitExceeded)".into())
    );
}

/// The engine owns multi-platform aggregation: every platform must pass, and
/// the strictest names itself.
#[test]
fn the_strictest_platform_decides() {
    let set = policies(&[(
        "deny-critical",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}",
    )]);
    let clean = scan(&[("M", Medium, true)]);
    let critical = scan(&[("C", Critical, true)]);
    let p = pod("nginx");
    let targets = [
        TargetEvidence {
            digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
            evidence: Evidence::Scanned(&clean),
        },
        TargetEvidence {
            digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222",
            evidence: Evidence::Scanned(&critical),
        },
        TargetEvidence {
            digest: "sha256:3333333333333333333333333333333333333333333333333333333333333333",
            evidence: Evidence::Scanned(&critical),
        },
    ];
    let (d, which) =
        set.evaluate_targets(&p.subject(), &targets, &FailureActions::default(), now());
    assert_eq!((d.action, which), (Action::Deny, Some(1)));
    // A digest exemption for the one bad platform only lifts that platform.
    let exempt = policies(&[(
        "deny-critical",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}\nexemptions: [{type: ImageDigest, value: 'sha256:2222222222222222222222222222222222222222222222222222222222222222'}]",
    )]);
    let (d, which) =
        exempt.evaluate_targets(&p.subject(), &targets, &FailureActions::default(), now());
    assert_eq!((d.action, which), (Action::Deny, Some(2)));
    // Nothing looked up at all: judged as unscanned.
    let (d, which) = set.evaluate_targets(&p.subject(), &[], &FailureActions::default(), now());
    assert_eq!((d.action, which), (Action::Allow, None));
}

#[test]
fn audit_only_turns_every_deny_into_a_warning_that_says_so() {
    let set = policies(&[(
        "deny-critical",
        "action: Deny\nconditions: {maxAllowedSeverities: {critical: 0}}",
    )]);
    let p = pod("mysql:8");
    let denied = ContainerDecision {
        container: "db".into(),
        image: p.image.to_string(),
        decision: judge(&set, &p, &scan(&[("CVE-C", Critical, true)])),
    };
    let a = aggregate_with(
        std::slice::from_ref(&denied),
        AnswerOptions { audit_only: true },
    );
    assert!(a.allowed);
    assert_eq!(a.action, Action::Audit);
    assert_eq!(a.message, None);
    assert_eq!(
        a.warnings,
        [
            "portcullis audit-only, would deny: docker.io/library/mysql:8: Image contains 1 critical CVEs, which is more than the allowed count of: 0 (rule deny-critical)"
        ]
    );
}
