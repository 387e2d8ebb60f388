//! Every fixture of `testdata/SOURCES.md` parses with the counts listed
//! there, mapped into Portcullis levels (DESIGN §3.3); malformed and hostile input
//! gives typed errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails loudly"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::fixture;
use portcullis_core::findings::vex::{VexStatus, parse_openvex};
use portcullis_core::findings::{
    FindingsError, FormatHint, Limits, Report, ReportFormat, parse_report, parse_report_with,
};
use portcullis_core::severity::Severity::{self, *};

fn parse(path: &str) -> Report {
    parse_report(&fixture(path), FormatHint::default()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Findings per level, levels with zero left out.
fn counts(report: &Report) -> BTreeMap<Severity, usize> {
    let mut out = BTreeMap::new();
    for f in &report.findings {
        *out.entry(f.severity).or_default() += 1;
    }
    out
}

/// Distinct vulnerability IDs per level (how SOURCES.md counts CycloneDX).
fn distinct_counts(report: &Report) -> BTreeMap<Severity, usize> {
    let ids: BTreeSet<(Severity, &str)> = report
        .findings
        .iter()
        .map(|f| (f.severity, f.id.as_str()))
        .collect();
    let mut out = BTreeMap::new();
    for (s, _) in ids {
        *out.entry(s).or_default() += 1;
    }
    out
}

/// Expected per-level counts.
type Levels = &'static [(Severity, usize)];

fn expect(pairs: &[(Severity, usize)]) -> BTreeMap<Severity, usize> {
    pairs.iter().copied().collect()
}

#[test]
fn trivy_json_reports() {
    let cases: &[(&str, &[(Severity, usize)])] = &[
        (
            "trivy-json/defectdojo-trivy-scheme_2_many_vulns.json",
            &[(Critical, 1), (High, 1), (Medium, 3)],
        ),
        ("trivy-json/trivy-alpine-310.json.golden", &[(Medium, 4)]),
        (
            "trivy-json/trivy-centos-7-2021.json.golden",
            &[(High, 26), (Medium, 279), (Low, 406)],
        ),
        (
            "trivy-json/trivy-debian-buster.json.golden",
            &[(Critical, 1), (Low, 1)],
        ),
        (
            "trivy-json/trivy-gomod.json.golden",
            &[(Medium, 1), (Unknown, 4)],
        ),
        (
            "trivy-json/trivy-pom.json.golden",
            &[(Critical, 1), (High, 1)],
        ),
        (
            "trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden",
            &[],
        ),
    ];
    for (path, want) in cases {
        let report = parse(path);
        assert_eq!(report.format, ReportFormat::TrivyJson, "{path}");
        assert_eq!(counts(&report), expect(want), "{path}");
    }
    let alpine = parse("trivy-json/trivy-alpine-310.json.golden");
    let f = &alpine.findings[0];
    assert_eq!(f.id, "CVE-2019-1549");
    assert_eq!(f.package.as_deref(), Some("libcrypto1.1"));
    assert_eq!(f.installed_version.as_deref(), Some("1.1.1c-r0"));
    assert_eq!(f.fixed_version.as_deref(), Some("1.1.1d-r0"));
    assert_eq!(f.cvss_score, Some(5.3));
    assert!(alpine.scanned_at.is_some(), "CreatedAt is the scan time");
    assert_eq!(
        alpine.scanner.as_ref().map(|s| s.name.as_str()),
        Some("Trivy")
    );
    // The 2021 report predates CreatedAt: no scan time rather than a made-up one.
    assert_eq!(
        parse("trivy-json/trivy-centos-7-2021.json.golden").scanned_at,
        None
    );
}

#[test]
fn trivy_and_grype_sarif_reports() {
    let cases: &[(&str, &[(Severity, usize)])] = &[
        ("trivy-sarif/trivy-alpine-310.sarif.golden", &[(Medium, 4)]),
        (
            "trivy-sarif/trivy-debian-buster-2020.sarif.json.golden",
            &[(High, 5), (Medium, 23), (Low, 71)],
        ),
        (
            "grype-sarif/defectdojo-grype-0.34.7-cxf-3.4.6.sarif",
            &[(Critical, 1), (High, 11), (Medium, 4), (Low, 6)],
        ),
        // Grype's label wins over its CVSS score: CVE-1999-0001 is "low" with a score of 8.2.
        (
            "grype-sarif/grype-snapshot-TestSarifPresenter_image.golden",
            &[(Critical, 1), (Low, 1)],
        ),
    ];
    for (path, want) in cases {
        let report = parse(path);
        assert_eq!(report.format, ReportFormat::Sarif, "{path}");
        assert_eq!(counts(&report), expect(want), "{path}");
    }
    // Rule ids become vulnerability ids: "[LOW] CVE-2011-3374" and "CVE-2008-0732-<package>".
    let old = parse("trivy-sarif/trivy-debian-buster-2020.sarif.json.golden");
    assert!(
        old.findings
            .iter()
            .any(|f| f.id == "CVE-2011-3374" && f.severity == Low)
    );
    let grype = parse("grype-sarif/defectdojo-grype-0.34.7-cxf-3.4.6.sarif");
    let f = grype
        .findings
        .iter()
        .find(|f| f.id == "CVE-2019-12419")
        .expect("critical finding");
    assert_eq!(
        (f.severity, f.package.as_deref()),
        (Critical, Some("cxf-xjc-runtime"))
    );
    assert!(grype.findings.iter().all(|f| !f.id.contains("geronimo")));
    // A media type hint selects the parser directly.
    let hinted = parse_report(
        &fixture("trivy-sarif/trivy-alpine-310.sarif.golden"),
        FormatHint {
            media_type: Some("application/sarif+json"),
            ..Default::default()
        },
    );
    assert_eq!(hinted.map(|r| r.findings.len()), Ok(4));
}

#[test]
fn cyclonedx_reports_count_per_component() {
    let cases: &[(&str, Levels, usize)] = &[
        (
            "trivy-cyclonedx/defectdojo-trivy-0.48.1-cyclonedx-issue_9277.json",
            &[(High, 4), (Medium, 4), (Low, 2)],
            14,
        ),
        (
            "trivy-cyclonedx/trivy-fluentd-multiple-lockfiles-short.cdx.json.golden",
            &[(Critical, 2), (High, 1)],
            3,
        ),
        (
            "trivy-cyclonedx/trivy-npm-cyclonedx.json.golden",
            &[(Medium, 1)],
            1,
        ),
        (
            "trivy-cyclonedx/trivy-pom-cyclonedx.json.golden",
            &[(Critical, 1), (High, 1)],
            2,
        ),
        ("vex/cyclonedx-vex-bom-examples-vex.json", &[(High, 1)], 1),
        ("vex/cyclonedx-vex-trivy-testdata.json", &[(Unknown, 2)], 2),
    ];
    for (path, distinct, findings) in cases {
        let report = parse(path);
        assert_eq!(report.format, ReportFormat::CycloneDx, "{path}");
        assert_eq!(distinct_counts(&report), expect(distinct), "{path}");
        // One CVE in two packages is two findings (DESIGN §3.3).
        assert_eq!(report.findings.len(), *findings, "{path}");
    }
    let issue = parse("trivy-cyclonedx/defectdojo-trivy-0.48.1-cyclonedx-issue_9277.json");
    let libc: Vec<_> = issue
        .findings
        .iter()
        .filter(|f| f.id == "CVE-2016-20013")
        .collect();
    let packages: Vec<_> = libc.iter().filter_map(|f| f.package.as_deref()).collect();
    assert_eq!(packages, ["libc-bin", "libc6"]);
}

#[test]
fn grype_json_reports() {
    let cases: &[(&str, &[(Severity, usize)])] = &[
        // One match has no severity and no CVSS of its own: Unknown.
        (
            "grype-json/defectdojo-grype-issue_9618-ubi8.json",
            &[
                (Critical, 1),
                (High, 18),
                (Medium, 13),
                (Low, 2),
                (Unknown, 1),
            ],
        ),
        (
            "grype-json/defectdojo-grype-many_vulns-python3.6.json",
            &[
                (High, 32),
                (Medium, 613),
                (Low, 107),
                (Negligible, 681),
                (Unknown, 76),
            ],
        ),
        ("grype-json/defectdojo-grype-no_vuln.json", &[]),
        ("grype-json/grype-chainguard-ruby-test.json", &[(High, 3)]),
        (
            "grype-json/grype-snapshot-TestJsonImgsPresenter.golden",
            &[(Critical, 1), (Low, 1)],
        ),
    ];
    for (path, want) in cases {
        let report = parse(path);
        assert_eq!(report.format, ReportFormat::GrypeJson, "{path}");
        assert_eq!(counts(&report), expect(want), "{path}");
    }
    let ubi = parse("grype-json/defectdojo-grype-issue_9618-ubi8.json");
    assert!(
        ubi.findings
            .iter()
            .any(|f| f.id == "CVE-2024-26308" && f.severity == Unknown && f.is_fixable())
    );
    assert_eq!(
        ubi.scanner.as_ref().and_then(|s| s.version.as_deref()),
        Some("0.96.0")
    );
    assert!(ubi.scanned_at.is_some());
}

#[test]
fn cosign_vuln_attestations() {
    let cases: &[(&str, ReportFormat, Levels)] = &[
        (
            "cosign-vuln-attestation/cosign-policy-testdata-valid-vuln.dsse.json",
            ReportFormat::EmptyCosignVuln,
            &[],
        ),
        (
            "cosign-vuln-attestation/cosign-spec-example-predicate-alpine-3.12.json",
            ReportFormat::TrivyJson,
            &[(High, 2)],
        ),
        (
            "cosign-vuln-attestation/policy-controller-distroless-static.dsse.json",
            ReportFormat::Sarif,
            &[],
        ),
        (
            "cosign-vuln-attestation/sluice-obs-metallb-configmaptocrs.trivy_vuln.intoto.json",
            ReportFormat::TrivyJson,
            &[(High, 2)],
        ),
        (
            "cosign-vuln-attestation/trivy-docs-cosign-vuln-predicate-alpine-3.10.json",
            ReportFormat::TrivyJson,
            &[(Critical, 1)],
        ),
    ];
    for (path, format, want) in cases {
        let report = parse(path);
        assert_eq!(report.format, *format, "{path}");
        assert_eq!(counts(&report), expect(want), "{path}");
    }
    let signed = parse("cosign-vuln-attestation/cosign-policy-testdata-valid-vuln.dsse.json");
    assert!(signed.dsse);
    assert_eq!(signed.scanned_at, None, "zero timestamps mean unknown");
    let sluice =
        parse("cosign-vuln-attestation/sluice-obs-metallb-configmaptocrs.trivy_vuln.intoto.json");
    assert_eq!(
        sluice.predicate_type.as_deref(),
        Some("https://cosign.sigstore.dev/attestation/vuln/v1")
    );
    assert_eq!(
        sluice.scanned_at.map(|t| t.to_string()).as_deref(),
        Some("2026-09-04T22:42:35.016403708Z")
    );
}

#[test]
fn dsse_json_lines_hold_three_envelopes_with_legacy_predicate_type() {
    let bytes = fixture("cosign-vuln-attestation/chainguard-vul-scans-go-demo.dsse.jsonl");
    let reports: Vec<Report> = bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| parse_report(line, FormatHint::default()).expect("envelope parses"))
        .collect();
    let formats: Vec<_> = reports.iter().map(|r| r.format).collect();
    assert_eq!(
        formats,
        [
            ReportFormat::SnykJson,
            ReportFormat::Sarif,
            ReportFormat::Sarif
        ]
    );
    for r in &reports {
        assert!(r.dsse && r.findings.is_empty());
        assert_eq!(
            r.predicate_type.as_deref(),
            Some("cosign.sigstore.dev/attestation/vuln/v1")
        );
        assert!(r.scanned_at.is_some());
    }
    let scanners: Vec<_> = reports
        .iter()
        .filter_map(|r| r.scanner.as_ref()?.version.as_deref())
        .collect();
    assert_eq!(scanners, ["v1.966.0", "0.29.2", "0.38.0"]);
}

#[test]
fn intoto_vulns_predicates() {
    for path in [
        "intoto-vulns/guac-certify-vuln-v02.json",
        "intoto-vulns/guac-certify-vuln-v01.json",
    ] {
        let report = parse(path);
        assert_eq!(report.format, ReportFormat::InTotoVulns, "{path}");
        // 8 IDs; the one with a CVSS vector scores 9.0 (Critical), the rest say nothing.
        assert_eq!(
            counts(&report),
            expect(&[(Critical, 1), (Unknown, 7)]),
            "{path}"
        );
        let scored = report
            .findings
            .iter()
            .find(|f| f.severity == Critical)
            .expect("scored");
        assert_eq!(
            (scored.id.as_str(), scored.cvss_score),
            ("GHSA-7rjr-3q55-vv33", Some(9.0))
        );
        assert_eq!(
            report.scanned_at.map(|t| t.to_string()).as_deref(),
            Some("2022-11-21T17:45:50.52Z")
        );
    }
    let none = parse("intoto-vulns/guac-certify-novuln-v02.json");
    assert_eq!(
        (none.format, none.findings.len()),
        (ReportFormat::InTotoVulns, 0)
    );
    // The spec's example is JSONC with a placeholder: a typed error, not a panic.
    let jsonc = parse_report(
        &fixture("intoto-vulns/intoto-spec-vulns_02-example.jsonc"),
        FormatHint::default(),
    );
    assert!(
        matches!(jsonc, Err(FindingsError::InvalidJson(_))),
        "{jsonc:?}"
    );
}

#[test]
fn reference_product_artifact_shape() {
    // The shape the reference product's scanner writes (defender-spec.md §3).
    let statement = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"img","digest":{"sha256":"ab"}}],
      "predicateType":"https://in-toto.io/attestation/vulns/v0.2",
      "predicate":{"scanner":{"uri":"MDVM","version":"1","result":[
        {"id":"CVE-2022-42004","severity":[{"method":"Ibm","score":"6.2","textualScore":"Medium","cvssVersion":"3.0"}],
         "leadingSeverityScore":"Medium","vulnerablePackage":"cpe:2.3:a:fasterxml:jackson-databind:2.13.0:*:*:*:*:*:*:*",
         "detectedVersion":"2.13.0","fixVersion":"2.13.4.1"},
        {"id":"CVE-2023-1","severity":[{"method":"nvd","score":"9.8"}],"annotations":[{"fixVersion":""}]}]},
      "metadata":{"scanStartedOn":"2025-12-02T21:40:00Z","scanFinishedOn":"2025-12-02T21:46:47Z"}}}"#;
    let report = parse_report(statement, FormatHint::default()).expect("parses");
    assert_eq!(counts(&report), expect(&[(Critical, 1), (Medium, 1)]));
    let f = &report.findings[0];
    assert_eq!(f.installed_version.as_deref(), Some("2.13.0"));
    assert!(f.is_fixable());
    assert!(!report.findings[1].is_fixable());
}

#[test]
fn openvex_documents_are_recognised_not_counted() {
    let count = |path: &str| {
        let mut by = BTreeMap::new();
        for s in parse_openvex(&fixture(path)).expect(path) {
            *by.entry(format!("{:?}", s.status)).or_insert(0) += 1;
        }
        by
    };
    let m = |p: &[(&str, i32)]| {
        p.iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        count("vex/openvex-go-vex-v0.2.0.json"),
        m(&[("Fixed", 3), ("NotAffected", 2)])
    );
    assert_eq!(
        count("vex/openvex-go-vex-v020-1.vex.json"),
        m(&[("UnderInvestigation", 1)])
    );
    assert_eq!(
        count("vex/openvex-trivy-project.openvex.json"),
        m(&[("NotAffected", 21)])
    );
    let statements = parse_openvex(&fixture("vex/openvex-go-vex-v0.2.0.json")).expect("parses");
    assert!(
        statements
            .iter()
            .all(|s| !s.vulnerability.is_empty() && !s.products.is_empty())
    );
    assert!(matches!(
        statements[0].status,
        VexStatus::NotAffected | VexStatus::Fixed
    ));
    let as_report = parse_report(
        &fixture("vex/openvex-go-vex-v0.2.0.json"),
        FormatHint::default(),
    );
    assert!(matches!(as_report, Err(FindingsError::NotFindings(_))));
}

#[test]
fn malformed_and_hostile_input_gives_typed_errors() {
    let p = |bytes: &[u8]| parse_report(bytes, FormatHint::default());
    assert!(matches!(p(b""), Err(FindingsError::InvalidJson(_))));
    assert!(matches!(p(b"[1,2,3]"), Err(FindingsError::UnknownFormat)));
    assert!(matches!(
        p(b"{\"hello\":1}"),
        Err(FindingsError::UnknownFormat)
    ));
    assert!(matches!(
        p(b"\"just a string\""),
        Err(FindingsError::UnknownFormat)
    ));
    // Truncated: the large Trivy report cut in half.
    let centos = fixture("trivy-json/trivy-centos-7-2021.json.golden");
    assert!(matches!(
        p(&centos[..centos.len() / 2]),
        Err(FindingsError::InvalidJson(_))
    ));
    // Deep nesting: a typed field refuses it, an embedded document hits serde_json's
    // recursion limit instead of the stack.
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let typed = format!(r#"{{"SchemaVersion":2,"Results":{}}}"#, deep(100_000));
    assert!(matches!(
        p(typed.as_bytes()),
        Err(FindingsError::Shape {
            format: "Trivy",
            ..
        })
    ));
    let embedded = format!(
        r#"{{"predicateType":"{COSIGN}","predicate":{{"scanner":{{"result":{{"runs":{}}}}}}}}}"#,
        deep(100_000)
    );
    let nested = p(embedded.as_bytes());
    assert!(
        matches!(&nested, Err(FindingsError::InvalidJson(m)) if m.contains("recursion")),
        "{nested:?}"
    );
    // Wrong types are named.
    let wrong = br#"{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"VulnerabilityID":7}]}]}"#;
    assert!(matches!(
        p(wrong),
        Err(FindingsError::Shape {
            format: "Trivy",
            ..
        })
    ));
    let wrong = br#"{"matches":"all of them"}"#;
    assert!(matches!(
        p(wrong),
        Err(FindingsError::Shape {
            format: "Grype",
            ..
        })
    ));
    // A huge string is just a long ID; a too-large document is refused before parsing.
    let long_id = format!(
        r#"{{"SchemaVersion":2,"Results":[{{"Vulnerabilities":[{{"VulnerabilityID":"{}"}}]}}]}}"#,
        "X".repeat(1 << 20)
    );
    assert_eq!(
        p(long_id.as_bytes()).map(|r| r.findings[0].id.len()),
        Ok(1 << 20)
    );
    let small = Limits {
        max_bytes: 1024,
        ..Default::default()
    };
    assert!(matches!(
        parse_report_with(&centos, FormatHint::default(), small),
        Err(FindingsError::TooLarge { .. })
    ));
    let few = Limits {
        max_findings: 10,
        ..Default::default()
    };
    assert!(matches!(
        parse_report_with(&centos, FormatHint::default(), few),
        Err(FindingsError::TooManyFindings(10))
    ));
    // A hint that does not fit the content is an error, never "no findings".
    let trivy = fixture("trivy-json/trivy-pom.json.golden");
    let sarif_hint = FormatHint {
        artifact_type: Some("application/sarif+json"),
        ..Default::default()
    };
    assert!(matches!(
        parse_report(&trivy, sarif_hint),
        Err(FindingsError::Shape {
            format: "SARIF",
            ..
        })
    ));
    // A CycloneDX SBOM without vulnerabilities is not a clean scan.
    assert!(matches!(
        p(br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#),
        Err(FindingsError::NotFindings(_))
    ));
    // DSSE: bad base64, foreign payload type, envelope inside an envelope.
    assert!(matches!(
        p(br#"{"payloadType":"application/vnd.in-toto+json","payload":"!!!","signatures":[]}"#),
        Err(FindingsError::Envelope(_))
    ));
    assert!(matches!(
        p(br#"{"payloadType":"text/plain","payload":"e30=","signatures":[]}"#),
        Err(FindingsError::Envelope(_))
    ));
    let inner =
        base64_encode(br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30="}"#);
    let nested = format!(r#"{{"payloadType":"application/vnd.in-toto+json","payload":"{inner}"}}"#);
    assert!(
        matches!(p(nested.as_bytes()), Err(FindingsError::Envelope(m)) if m.contains("nested"))
    );
    // A statement with a predicate that carries no vulnerabilities.
    let slsa = br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1","predicate":{}}"#;
    assert!(matches!(
        p(slsa),
        Err(FindingsError::UnsupportedPredicate(_))
    ));
}

const COSIGN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
