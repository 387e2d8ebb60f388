//! Inputs on which a fuzz target failed once (`testdata/fuzz-regressions/<target>/`,
//! one README line each), replayed with the behaviour that was fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails loudly"
)]

mod common;

use std::path::PathBuf;

use portcullis_core::findings::{
    COSIGN_VULN_V1, FindingsError, FormatHint, Limits, Report, parse_report, parse_report_with,
};
use portcullis_core::reference::{ImageRef, MAX_NAME_LEN, ReferenceError};

fn regressions_dir() -> PathBuf {
    common::fixtures_dir().join("fuzz-regressions")
}

/// The bytes of one kept input, e.g. `regression("reference/...")`.
fn regression(relative: &str) -> Vec<u8> {
    let path = regressions_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every kept input of a target, with its name.
fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = regressions_dir().join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// The `reference` target's property: a parsed reference's normalised text
/// parses to the same reference.
fn assert_reference_idempotent(input: &str) {
    if let Ok(r) = ImageRef::parse(input) {
        let again = ImageRef::parse(r.as_str())
            .unwrap_or_else(|e| panic!("{input:?} → {:?} does not re-parse: {e}", r.as_str()));
        assert_eq!(again, r);
    }
}

#[test]
fn every_kept_reference_input_normalises_idempotently() {
    let inputs = regressions("reference");
    assert!(!inputs.is_empty());
    for (_, bytes) in inputs {
        assert_reference_idempotent(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn a_hub_name_over_255_once_normalised_is_refused() {
    let input = regression("reference/hub-name-over-255-once-normalised");
    let text = std::str::from_utf8(&input).unwrap();
    assert!(
        text.len() <= MAX_NAME_LEN,
        "the written name is under the limit"
    );
    let e = ImageRef::parse(text).unwrap_err();
    assert!(
        matches!(&e, ReferenceError::Invalid { reason, .. } if reason.contains("normalised repository name is 256")),
        "{e}"
    );

    // At the boundary: the longest one-component Hub name that fits
    // normalises to exactly 255 characters and re-parses; one more is refused.
    let prefix = "docker.io/library/".len();
    let fits = "a".repeat(MAX_NAME_LEN - prefix);
    let r = ImageRef::parse(&fits).unwrap();
    assert_eq!(r.name().len(), MAX_NAME_LEN);
    assert_eq!(ImageRef::parse(r.as_str()).unwrap(), r);
    assert!(ImageRef::parse(&"a".repeat(MAX_NAME_LEN - prefix + 1)).is_err());

    // A dotless upper-case host gains `:443` when normalised: same rule.
    let path = "a".repeat(MAX_NAME_LEN - "E/".len());
    let written = format!("E/{path}");
    assert_eq!(written.len(), MAX_NAME_LEN);
    assert!(ImageRef::parse(&written).is_err());
    let shorter = format!("E/{}", &path[4..]);
    let r = ImageRef::parse(&shorter).unwrap();
    assert_eq!(r.name().len(), MAX_NAME_LEN);
    assert_eq!(ImageRef::parse(r.as_str()).unwrap(), r);
}

/// The findings targets' limits for an input: four times its size.
fn limits_for(input: &[u8]) -> Limits {
    Limits {
        max_bytes: input.len() * 4,
        max_findings: 200_000,
    }
}

/// The text a report's findings hold.
fn findings_text(report: &Report) -> usize {
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

/// `result` as the scanner result of a cosign vuln statement.
fn in_cosign_statement(result: &[u8]) -> Vec<u8> {
    let mut out = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","predicateType":"{COSIGN_VULN_V1}","predicate":{{"scanner":{{"result":"#
    )
    .into_bytes();
    out.extend_from_slice(result);
    out.extend_from_slice(b"}}}");
    out
}

#[test]
fn every_kept_findings_input_stays_within_its_limit() {
    for target in ["findings_sarif", "findings_cyclonedx"] {
        let inputs = regressions(target);
        assert!(!inputs.is_empty());
        for (name, input) in inputs {
            let limits = limits_for(&input);
            if let Ok(report) = parse_report_with(&input, FormatHint::default(), limits) {
                assert!(
                    findings_text(&report) <= limits.max_bytes,
                    "{target}/{name}"
                );
            }
        }
    }
}

#[test]
fn a_sarif_rule_copied_into_every_result_is_refused_beyond_the_limit() {
    let input = regression("findings_sarif/rule-copied-into-every-result.json");
    // 64 results name one rule with a 209-character ID: 13,376 bytes of
    // findings from 1,362 bytes of report.
    let limits = limits_for(&input);
    assert_eq!(
        parse_report_with(&input, FormatHint::default(), limits),
        Err(FindingsError::Expands(limits.max_bytes))
    );
    // The same report embedded in a cosign attestation is held to it too.
    let embedded = in_cosign_statement(&input);
    assert_eq!(
        parse_report_with(&embedded, FormatHint::default(), limits),
        Err(FindingsError::Expands(limits.max_bytes))
    );
    // Under the default limits it is read, every result a finding.
    let report = parse_report(&input, FormatHint::default()).unwrap();
    assert_eq!(report.findings.len(), 64);
    assert_eq!(findings_text(&report), 64 * 209);

    // A 1 MiB rule ID named by 100 results would be 100 MiB of findings
    // from 1 MiB of report: refused at the default 32 MiB limit.
    let id = format!("CVE-{}", "1".repeat(1 << 20));
    let results = vec![r#"{"ruleIndex":0}"#; 100].join(",");
    let big = format!(
        r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"x","rules":[{{"id":"{id}"}}]}}}},"results":[{results}]}}]}}"#
    );
    assert_eq!(
        parse_report(big.as_bytes(), FormatHint::default()),
        Err(FindingsError::Expands(Limits::default().max_bytes))
    );
}

#[test]
fn a_cyclonedx_component_copied_into_every_affects_entry_is_refused_beyond_the_limit() {
    let input = regression("findings_cyclonedx/component-copied-into-every-affects.json");
    // 64 `affects` entries name one component with a 200-character name.
    let limits = limits_for(&input);
    assert_eq!(
        parse_report_with(&input, FormatHint::default(), limits),
        Err(FindingsError::Expands(limits.max_bytes))
    );
    let embedded = in_cosign_statement(&input);
    assert_eq!(
        parse_report_with(&embedded, FormatHint::default(), limits),
        Err(FindingsError::Expands(limits.max_bytes))
    );
    let report = parse_report(&input, FormatHint::default()).unwrap();
    assert_eq!(report.findings.len(), 64);
    assert_eq!(findings_text(&report), 64 * (10 + 200 + 1));
}

#[test]
fn every_kept_admission_input_decodes_as_in_two_passes() {
    use portcullis_core::admission::{OwnerTrust, decode_review, decode_review_in_two_passes};
    let inputs = regressions("admission");
    assert!(!inputs.is_empty());
    for (name, bytes) in inputs {
        let one = decode_review(&bytes);
        let two = decode_review_in_two_passes(&bytes);
        match (one, two) {
            (Err(a), Err(b)) => assert_eq!(a, b, "{name}"),
            (Ok(a), Ok(b)) => {
                let trust = OwnerTrust::default();
                assert_eq!(
                    a.request.workload(&trust),
                    b.request.workload(&trust),
                    "{name}"
                );
            }
            (a, b) => panic!("{name}: one pass {:?}, two passes {:?}", a.err(), b.err()),
        }
    }
}
