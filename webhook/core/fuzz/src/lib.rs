//! Shared checks for the fuzz targets in `fuzz_targets/`. Each target feeds
//! untrusted bytes to one entry point of `portcullis-core` and asserts what
//! the crate promises about the result; a panic (or a sanitizer report) is a
//! finding. Inputs that crashed once are kept as regression tests in
//! `webhook/core/tests/fuzz_regressions.rs`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use base64::Engine as _;
use jiff::Timestamp;
use portcullis_core::documents::{Document, parse_documents};
use portcullis_core::engine::{
    Action, AdmissionDecision, Decision, Evidence, FailureActions, FailureClass, GateFinding,
    PolicySet, ScanSummary, Subject, TargetEvidence, limits,
};
use portcullis_core::findings::{
    COSIGN_VULN_V1, FindingsError, FormatHint, INTOTO_VULNS_V02, Limits, Report, parse_report_with,
};
use portcullis_core::reference::ImageRef;
use portcullis_core::severity::Severity;

/// Limits for one input: the production findings cap, and a size cap of
/// four times the input (at least 4 KiB), so the input and its wrapped forms
/// fit, and a report whose findings would hold more text than that (one
/// rule or component copied into very many results) is caught.
pub fn limits_for(data: &[u8]) -> Limits {
    Limits {
        max_bytes: data.len().saturating_mul(4).max(4096),
        max_findings: 200_000,
    }
}

/// The text a report's findings hold.
pub fn findings_text(report: &Report) -> usize {
    report
        .findings
        .iter()
        .map(|f| {
            f.id.len()
                + [&f.package, &f.installed_version, &f.fixed_version, &f.purl]
                    .into_iter()
                    .flatten()
                    .map(String::len)
                    .sum::<usize>()
        })
        .sum()
}

/// What every parse result must satisfy: the findings cap holds, the
/// findings hold no more text than a report may be long, scores are finite,
/// and errors render.
pub fn check_report(result: &Result<Report, FindingsError>, limits: Limits) {
    match result {
        Ok(report) => {
            assert!(
                report.findings.len() <= limits.max_findings,
                "{} findings over the cap of {}",
                report.findings.len(),
                limits.max_findings
            );
            let text = findings_text(report);
            assert!(
                text <= limits.max_bytes,
                "the findings hold {text} bytes of text, more than the {}-byte report limit",
                limits.max_bytes
            );
            for f in &report.findings {
                assert!(
                    f.cvss_score.is_none_or(f64::is_finite),
                    "non-finite CVSS score in {f:?}"
                );
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Parses with a hint and checks the result.
pub fn parse_checked(
    data: &[u8],
    hint: FormatHint<'_>,
    limits: Limits,
) -> Result<Report, FindingsError> {
    let result = parse_report_with(data, hint, limits);
    check_report(&result, limits);
    result
}

/// `payload` in a DSSE envelope (unsigned: the parser reads, it does not verify).
pub fn dsse(payload: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
    format!(
        r#"{{"payloadType":"application/vnd.in-toto+json","payload":"{encoded}","signatures":[]}}"#
    )
    .into_bytes()
}

/// `predicate` (raw JSON bytes, spliced as they are) in an in-toto statement.
pub fn statement(predicate_type: &str, predicate: &[u8]) -> Vec<u8> {
    let mut out = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"x","digest":{{"sha256":"00"}}}}],"predicateType":"{predicate_type}","predicate":"#
    )
    .into_bytes();
    out.extend_from_slice(predicate);
    out.push(b'}');
    out
}

/// `result` (raw JSON bytes) as a cosign vuln predicate's scanner result.
pub fn cosign_statement(result: &[u8]) -> Vec<u8> {
    let mut predicate = br#"{"scanner":{"result":"#.to_vec();
    predicate.extend_from_slice(result);
    predicate.extend_from_slice(b"}}");
    statement(COSIGN_VULN_V1, &predicate)
}

/// The findings of two reports, compared as text (a NaN never equals itself).
pub fn same_findings(a: &Report, b: &Report) -> bool {
    format!("{:?}", a.findings) == format!("{:?}", b.findings)
}

/// A report that parsed directly parses the same inside a DSSE envelope
/// (unless it already was one: envelopes do not nest).
pub fn check_dsse_wrapping(data: &[u8], direct: &Result<Report, FindingsError>) {
    let wrapped = parse_checked(&dsse(data), FormatHint::default(), limits_for(data));
    if let Ok(direct) = direct
        && !direct.dsse
    {
        let wrapped = wrapped.unwrap_or_else(|e| {
            panic!(
                "parses directly ({:?}) but not in a DSSE envelope: {e}",
                direct.format
            )
        });
        assert!(wrapped.dsse);
        assert_eq!(wrapped.format, direct.format);
        assert!(
            same_findings(&wrapped, direct),
            "DSSE envelope changed the findings"
        );
    }
}

/// A report that parsed directly as a scanner format reads the same findings
/// when embedded in a cosign vuln attestation (the `serde_json::Value` path),
/// whenever the attestation reads it as the same format.
pub fn check_cosign_embedding(data: &[u8], direct: &Result<Report, FindingsError>) {
    let embedded = parse_checked(
        &cosign_statement(data),
        FormatHint::default(),
        limits_for(data),
    );
    if let (Ok(direct), Ok(embedded)) = (direct, &embedded)
        && embedded.format == direct.format
    {
        assert!(
            same_findings(embedded, direct),
            "cosign embedding changed the findings of a {:?} report",
            direct.format
        );
    }
}

/// The fixed time every evaluation uses.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_795_000_000).expect("a fixed, valid time")
}

/// Rules the admission target judges with: one of each kind of condition.
const RULES: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: deny-critical-prod}
spec:
  action: Deny
  priority: 10
  scope: [{matcherType: Namespace, values: ["prod-*", "default"]}]
  conditions:
    maxAllowedSeverities: {critical: 0}
    forbiddenCves: [CVE-2024-3094]
  ignoredCves: [{id: CVE-2023-44487, expires: 2027-12-31}]
  exemptions: [{type: Label, key: app, value: legacy}]
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: audit-everything}
spec:
  action: Audit
  conditions:
    maxAllowedSeverities: {high: 0, low: 3}
    allowedRegistries: ["*.azurecr.io", docker.io, "localhost:*"]
  findings: {maximumAge: 30d, blockUnscannedImages: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: repository-scoped}
spec:
  action: Deny
  scope:
  - {matcherType: Repository, operator: Glob, values: ["*/library/*", "*.azurecr.io/team/*"]}
  - {matcherType: Image, operator: EndsWith, values: [/nginx]}
  conditions: {maxAllowedSeverities: {medium: 1}, fixableOnly: true}
"#;

/// The compiled [`RULES`].
pub static POLICIES: LazyLock<PolicySet> = LazyLock::new(|| {
    let docs = parse_documents(RULES, "rules.yaml").expect("the fixed rules load");
    let specs: Vec<_> = docs
        .iter()
        .filter_map(|d| match d {
            Document::Policy(p) => {
                Some((p.metadata.name.clone().unwrap_or_default(), p.spec.clone()))
            }
            _ => None,
        })
        .collect();
    PolicySet::compile(specs.iter().map(|(n, s)| (n.as_str(), s))).expect("the fixed rules compile")
});

/// Findings with `extra` IDs added (at every level), scanned a day before [`now`].
pub fn summary(extra: &[&str]) -> ScanSummary {
    let mut findings = Vec::new();
    let fixed = [
        "CVE-2024-3094",
        "CVE-2023-44487",
        "CVE-2021-44228",
        "GHSA-xxxx",
    ];
    for (i, id) in fixed.iter().chain(extra).enumerate() {
        for (j, severity) in Severity::ALL.iter().enumerate() {
            if (i + j) % 3 == 0 {
                findings.push(GateFinding {
                    id: (*id).into(),
                    severity: *severity,
                    fixable: (i + j) % 2 == 0,
                });
            }
        }
    }
    let scanned = now().checked_sub(jiff::SignedDuration::from_hours(24)).ok();
    ScanSummary::new(findings, scanned)
}

/// What a decision must satisfy: its action is the strictest of its violations.
pub fn check_decision(decision: &Decision) {
    let strictest = decision
        .violations
        .iter()
        .map(|v| v.action)
        .max()
        .unwrap_or(Action::Allow);
    assert_eq!(decision.action, strictest, "{decision:?}");
    if let Some(message) = decision.message("img") {
        assert!(!message.is_empty());
    }
}

/// What an answer must satisfy: the limits the API server passes on.
pub fn check_answer(answer: &AdmissionDecision) {
    assert_eq!(answer.allowed, answer.action != Action::Deny);
    if let Some(m) = &answer.message {
        assert!(
            m.len() <= limits::MAX_MESSAGE_BYTES,
            "message of {} bytes",
            m.len()
        );
    }
    assert!(answer.warnings.len() <= limits::MAX_WARNINGS);
    for w in &answer.warnings {
        assert!(
            w.len() <= limits::MAX_WARNING_BYTES,
            "warning of {} bytes: {w}",
            w.len()
        );
    }
}

/// Judges one image of a subject on every kind of evidence and returns the
/// decision on scanned findings.
pub fn judge(policies: &PolicySet, subject: &Subject<'_>, image_text: &str) -> Decision {
    let failures = FailureActions::default();
    let mut strict = FailureActions::default();
    for class in FailureClass::ALL {
        strict.set(class, Action::Deny);
    }
    let summary = summary(&[]);
    let empty = ScanSummary::new(Vec::new(), None);
    if subject.image.is_none() {
        let d = policies.evaluate_unidentified(
            subject,
            FailureClass::InvalidReference,
            image_text,
            &failures,
            now(),
        );
        check_decision(&d);
        return d;
    }
    let _ = policies.any_applies(subject, now());
    for evidence in [
        Evidence::Scanned(&empty),
        Evidence::Failed {
            class: FailureClass::NoFindings,
            detail: "",
        },
        Evidence::Failed {
            class: FailureClass::RegistryUnavailable,
            detail: image_text,
        },
    ] {
        for f in [&failures, &strict] {
            check_decision(&policies.evaluate(subject, evidence, f, now()));
        }
    }
    let targets = [
        TargetEvidence {
            digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            evidence: Evidence::Scanned(&summary),
        },
        TargetEvidence {
            digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
            evidence: Evidence::Failed {
                class: FailureClass::MalformedFindings,
                detail: "x",
            },
        },
    ];
    let (d, index) = policies.evaluate_targets(subject, &targets, &failures, now());
    assert!(index.is_some_and(|i| i < targets.len()));
    check_decision(&d);
    d
}

/// A subject for `image` with fixed context.
pub fn subject<'a>(
    image: Option<&'a ImageRef>,
    labels: &'a BTreeMap<String, String>,
) -> Subject<'a> {
    Subject {
        namespace: "prod-eu",
        kind: "Deployment",
        workload: Some("checkout"),
        pod_name: None,
        labels,
        container: Some("app"),
        image,
        digest: None,
    }
}

/// FormatHint with only a media type.
pub fn media(media_type: &'static str) -> FormatHint<'static> {
    FormatHint {
        artifact_type: None,
        media_type: Some(media_type),
        predicate_type: None,
    }
}

/// The in-toto vulns predicate type, re-exported for targets.
pub const VULNS: &str = INTOTO_VULNS_V02;
