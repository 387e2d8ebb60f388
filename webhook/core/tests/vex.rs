//! VEX: OpenVEX and CycloneDX VEX parsed from the real documents in
//! testdata/vex and from the signed ones in testdata/signed, applied to real
//! findings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails loudly"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use portcullis_core::findings::vex::{
    VexDocument, VexFormat, VexSource, VexStatus, apply_vex, parse_cyclonedx_vex,
    parse_openvex_document, parse_vex,
};
use portcullis_core::findings::{Finding, FormatHint, parse_report};
use portcullis_core::severity::Severity;
use portcullis_core::trust::{DigestSet, Producer};
use portcullis_crds::{PublicKeySource, TrustedProducerSpec};

fn testdata(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn finding(id: &str, package: &str, version: &str, purl: Option<&str>) -> Finding {
    Finding {
        id: id.into(),
        severity: Severity::High,
        cvss_score: None,
        package: Some(package.into()),
        installed_version: Some(version.into()),
        fixed_version: None,
        purl: purl.map(str::to_owned),
    }
}

fn suppressed_ids(findings: &[Finding], digests: &[&str], docs: &[VexSource<'_>]) -> Vec<String> {
    let outcome = apply_vex(findings, digests, docs);
    outcome
        .suppressed
        .iter()
        .map(|s| {
            let f = &findings[s.finding];
            format!("{} {}", f.id, f.package.as_deref().unwrap_or("-"))
        })
        .collect()
}

const ALPINE: &str = "sha256:124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126";

#[test]
fn openvex_subcomponents_of_an_image_by_purl_with_encoded_digest() {
    // go-vex's v0.2.0 example: pkg:oci/alpine@sha256%3A124c..., subcomponents
    // libssl3 and libcrypto3 3.0.8-r3.
    let doc = parse_openvex_document(&testdata("vex/openvex-go-vex-v0.2.0.json")).unwrap();
    assert_eq!(doc.format, VexFormat::OpenVex);
    assert!(doc.timestamp.is_some());
    assert!(doc.statements.iter().all(|s| s.timestamp == doc.timestamp));
    let findings = vec![
        finding(
            "CVE-2023-1255",
            "libssl3",
            "3.0.8-r3",
            Some("pkg:apk/alpine/libssl3@3.0.8-r3?arch=x86_64&distro=3.17.3"),
        ),
        // Same CVE, a package the statement does not list.
        finding(
            "CVE-2023-1255",
            "libcurl",
            "8.0.1-r0",
            Some("pkg:apk/alpine/libcurl@8.0.1-r0?arch=x86_64"),
        ),
        // Same package, another installed version than the statement's.
        finding(
            "CVE-2023-2650",
            "libcrypto3",
            "3.0.9-r0",
            Some("pkg:apk/alpine/libcrypto3@3.0.9-r0"),
        ),
        // No purl in the report: name and version.
        finding("CVE-2023-2975", "libcrypto3", "3.0.8-r3", None),
        // A CVE the document does not mention.
        finding("CVE-2099-0001", "libssl3", "3.0.8-r3", None),
    ];
    let src = [VexSource {
        producer: "alpine-vex",
        document: &doc,
    }];
    assert_eq!(
        suppressed_ids(&findings, &[ALPINE], &src),
        ["CVE-2023-1255 libssl3", "CVE-2023-2975 libcrypto3"]
    );
    // Another image: the statements are about alpine@124c..., not about it.
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    assert!(suppressed_ids(&findings, &[other], &src).is_empty());
}

#[test]
fn openvex_aliases_and_package_products_from_the_trivy_project() {
    // Trivy's own VEX: products are Go packages, vulnerabilities have aliases.
    let doc = parse_openvex_document(&testdata("vex/openvex-trivy-project.openvex.json")).unwrap();
    assert_eq!(doc.statements.len(), 21);
    let st = &doc.statements[0];
    assert_eq!(st.vulnerability, "GO-2024-2575");
    assert!(st.aliases.contains(&"CVE-2024-26147".to_owned()));
    let findings = vec![
        finding(
            "CVE-2024-26147",
            "helm.sh/helm/v3",
            "v3.14.0",
            Some("pkg:golang/helm.sh/helm/v3@v3.14.0"),
        ),
        finding(
            "CVE-2024-26147",
            "helm.sh/helm/v4",
            "v4.0.0",
            Some("pkg:golang/helm.sh/helm/v4@v4.0.0"),
        ),
    ];
    let src = [VexSource {
        producer: "trivy",
        document: &doc,
    }];
    assert_eq!(
        suppressed_ids(&findings, &[ALPINE], &src),
        ["CVE-2024-26147 helm.sh/helm/v3"]
    );
}

#[test]
fn cyclonedx_vex_bom_links_resolve_to_purls() {
    let doc = parse_cyclonedx_vex(&testdata("vex/cyclonedx-vex-trivy-testdata.json")).unwrap();
    assert_eq!(doc.format, VexFormat::CycloneDx);
    assert_eq!(doc.statements.len(), 2);
    assert!(
        doc.statements
            .iter()
            .all(|s| s.status == VexStatus::NotAffected)
    );
    assert_eq!(
        doc.statements[1].products,
        ["pkg:deb/ubuntu/libstdc++6@12.3.0-1ubuntu1~22.04?arch=amd64&distro=ubuntu-22.04"]
    );
    let findings = vec![
        finding(
            "CVE-2021-44228",
            "spring-boot",
            "2.6.0",
            Some("pkg:maven/org.springframework.boot/spring-boot@2.6.0"),
        ),
        // Same name, other namespace: another package.
        finding(
            "CVE-2021-44228",
            "spring-boot",
            "2.6.0",
            Some("pkg:maven/org.example/spring-boot@2.6.0"),
        ),
        finding(
            "CVE-2022-27943",
            "libstdc++6",
            "12.3.0-1ubuntu1~22.04",
            Some("pkg:deb/ubuntu/libstdc%2B%2B6@12.3.0-1ubuntu1~22.04?arch=amd64"),
        ),
    ];
    let src = [VexSource {
        producer: "cdx",
        document: &doc,
    }];
    assert_eq!(
        suppressed_ids(&findings, &[ALPINE], &src),
        ["CVE-2021-44228 spring-boot", "CVE-2022-27943 libstdc++6"]
    );
    // The CycloneDX example's jackson-databind statement.
    let example = parse_vex(&testdata("vex/cyclonedx-vex-bom-examples-vex.json")).unwrap();
    assert_eq!(
        example.statements[0].products,
        ["pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.10.0?type=jar"]
    );
    assert_eq!(
        example.statements[0].justification.as_deref(),
        Some("code_not_reachable")
    );
}

#[test]
fn a_trivy_report_filtered_by_a_statement_about_one_package() {
    // Real Trivy findings carry purls with qualifiers; the statement has none.
    let report = parse_report(
        &testdata("trivy-json/trivy-alpine-310.json.golden"),
        FormatHint::default(),
    )
    .unwrap();
    assert!(report.findings.iter().all(|f| f.purl.is_some()));
    let image = "sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4";
    let vex = format!(
        r#"{{"@context":"https://openvex.dev/ns/v0.2.0","@id":"x","timestamp":"2026-11-01T00:00:00Z","statements":[
        {{"vulnerability":{{"name":"CVE-2019-1549"}},"status":"not_affected","justification":"vulnerable_code_not_present",
          "products":[{{"@id":"pkg:oci/alpine@{}","subcomponents":[{{"@id":"pkg:apk/alpine/libssl1.1@1.1.1c-r0"}}]}}]}}]}}"#,
        image.replace(':', "%3A")
    );
    let doc = parse_vex(vex.as_bytes()).unwrap();
    let src = [VexSource {
        producer: "p",
        document: &doc,
    }];
    assert_eq!(
        suppressed_ids(&report.findings, &[image], &src),
        ["CVE-2019-1549 libssl1.1"]
    );
    let outcome = apply_vex(&report.findings, &[image], &src);
    assert_eq!(outcome.remaining(&report.findings).len(), 3);

    // Grype and CycloneDX reports carry purls too.
    for (file, first) in [
        (
            "grype-json/grype-chainguard-ruby-test.json",
            "pkg:apk/wolfi/",
        ),
        (
            "trivy-cyclonedx/trivy-pom-cyclonedx.json.golden",
            "pkg:maven/",
        ),
    ] {
        let r = parse_report(&testdata(file), FormatHint::default()).unwrap();
        assert!(
            r.findings
                .iter()
                .any(|f| f.purl.as_deref().is_some_and(|p| p.starts_with(first))),
            "{file}: {:?}",
            r.findings.iter().map(|f| &f.purl).collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_latest_statement_wins_across_documents_and_producers() {
    let doc = |time: &str, status: &str| -> VexDocument {
        parse_vex(
            format!(
                r#"{{"@context":"https://openvex.dev/ns/v0.2.0","timestamp":"{time}","statements":[
                {{"vulnerability":{{"name":"CVE-1"}},"status":"{status}","products":[{{"@id":"{ALPINE}"}}]}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    };
    let findings = vec![
        finding("CVE-1", "a", "1", None),
        finding("CVE-1", "b", "2", None),
    ];
    let old_na = doc("2026-01-01T00:00:00Z", "not_affected");
    let new_aff = doc("2026-02-01T00:00:00Z", "affected");
    let outcome = apply_vex(
        &findings,
        &[ALPINE],
        &[
            VexSource {
                producer: "vendor",
                document: &new_aff,
            },
            VexSource {
                producer: "team",
                document: &old_na,
            },
        ],
    );
    assert!(outcome.suppressed.is_empty(), "{outcome:?}");
    let new_na = doc("2026-03-01T00:00:00Z", "not_affected");
    let outcome = apply_vex(
        &findings,
        &[ALPINE],
        &[
            VexSource {
                producer: "vendor",
                document: &new_aff,
            },
            VexSource {
                producer: "team",
                document: &new_na,
            },
        ],
    );
    assert_eq!(outcome.suppressed.len(), 2);
    assert_eq!(outcome.suppressed[0].document, 1);
    assert_eq!(
        outcome.count_by_producer(),
        BTreeMap::from([("team".to_owned(), 2)])
    );
    // Under investigation does not suppress.
    let triage = doc("2026-04-01T00:00:00Z", "under_investigation");
    let outcome = apply_vex(
        &findings,
        &[ALPINE],
        &[
            VexSource {
                producer: "team",
                document: &new_na,
            },
            VexSource {
                producer: "team",
                document: &triage,
            },
        ],
    );
    assert!(outcome.suppressed.is_empty());
}

fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

fn producer(key: &str) -> Producer {
    let spec = TrustedProducerSpec {
        description: None,
        public_keys: vec![PublicKeySource {
            pem: Some(String::from_utf8(testdata(&format!("signed/keys/{key}"))).unwrap()),
            secret_ref: None,
        }],
        keyless: Vec::new(),
        trusted_root_ref: None,
        trusted_root: None,
        require_transparency_log: false,
    };
    Producer::load(key, &spec, |_| None, |_| None).unwrap()
}

fn digests() -> (String, String) {
    let d: serde_json::Value = serde_json::from_slice(&testdata("signed/digests.json")).unwrap();
    (
        d["image"].as_str().unwrap().to_owned(),
        d["index"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn signed_openvex_suppresses_busybox_not_ssl_client() {
    let (image, index) = digests();
    let set = DigestSet::new([image.as_str(), index.as_str()]);
    let p256 = producer("producer-p256.pub");
    // The findings: the signed cosign vuln attestation (2 × CVE-2021-28831).
    let report_env = p256
        .verify_dsse(
            &testdata("signed/dsse/cosign-vuln.p256.dsse.json"),
            &set,
            now(),
        )
        .unwrap();
    let mut findings = parse_report(report_env.statement().unwrap().1, FormatHint::default())
        .unwrap()
        .findings;
    findings.push(finding("CVE-2021-36159", "apk-tools", "2.10.6-r0", None));
    // The VEX, signed by the same producer.
    let vex_env = p256
        .verify_dsse(
            &testdata("signed/vex/acme-app.openvex.p256.dsse.json"),
            &set,
            now(),
        )
        .unwrap();
    assert_eq!(
        vex_env.signed_time,
        Some("2026-11-20T09:00:00Z".parse().unwrap())
    );
    let doc = parse_vex(vex_env.statement().unwrap().1).unwrap();
    assert_eq!(
        doc.id.as_deref(),
        Some("https://example.com/vex/acme-app-2026-001")
    );
    let digests = [image.as_str(), index.as_str()];
    let src = [VexSource {
        producer: p256.name(),
        document: &doc,
    }];
    // busybox: subcomponent match by name and version (the report has no purl);
    // ssl_client stays; CVE-2021-36159: the later "affected" wins.
    assert_eq!(
        suppressed_ids(&findings, &digests, &src),
        ["CVE-2021-28831 busybox"]
    );
    let outcome = apply_vex(&findings, &digests, &src);
    assert_eq!(outcome.suppressed[0].status, VexStatus::NotAffected);
    assert_eq!(
        outcome.suppressed[0].justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path")
    );
    // Judged as the "other" image, the statement about it (index 3, no
    // subcomponents) covers both packages; the busybox one does not apply.
    let other: serde_json::Value =
        serde_json::from_slice(&testdata("signed/digests.json")).unwrap();
    let outcome = apply_vex(&findings, &[other["other"].as_str().unwrap()], &src);
    let by: Vec<(String, usize)> = outcome
        .suppressed
        .iter()
        .map(|s| (findings[s.finding].package.clone().unwrap(), s.statement))
        .collect();
    assert_eq!(
        by,
        [("busybox".to_owned(), 3), ("ssl_client".to_owned(), 3)]
    );
}

#[test]
fn signed_cyclonedx_vex_resolves_for_the_index_and_by_component() {
    let (image, index) = digests();
    let set = DigestSet::new([image.as_str(), index.as_str()]);
    let ed = producer("producer-ed25519.pub");
    let report_env = ed
        .verify_dsse(
            &testdata("signed/dsse/intoto-vulns.ed25519.dsse.json"),
            &set,
            now(),
        )
        .unwrap();
    let mut findings = parse_report(report_env.statement().unwrap().1, FormatHint::default())
        .unwrap()
        .findings;
    assert_eq!(findings.len(), 8);
    // The GUAC predicate names no package; a copy with the purl, as Trivy gives it.
    let mut with_purl = findings
        .iter()
        .find(|f| f.id == "GHSA-jfh8-c2jp-5v3q")
        .unwrap()
        .clone();
    with_purl.purl = Some("pkg:maven/org.apache.logging.log4j/log4j-core@2.8.1".into());
    findings.push(with_purl);

    let vex_env = ed
        .verify_dsse(
            &testdata("signed/vex/acme-app.cdx-vex.ed25519.dsse.json"),
            &set,
            now(),
        )
        .unwrap();
    let doc = parse_vex(vex_env.statement().unwrap().1).unwrap();
    assert_eq!(doc.format, VexFormat::CycloneDx);
    let outcome = apply_vex(
        &findings,
        &[image.as_str(), index.as_str()],
        &[VexSource {
            producer: ed.name(),
            document: &doc,
        }],
    );
    let ids: Vec<(&str, bool)> = outcome
        .suppressed
        .iter()
        .map(|s| {
            (
                findings[s.finding].id.as_str(),
                findings[s.finding].purl.is_some(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("GHSA-7rjr-3q55-vv33", false),
            ("GHSA-jfh8-c2jp-5v3q", true)
        ]
    );
    assert_eq!(outcome.suppressed[0].status, VexStatus::Fixed);
    assert_eq!(outcome.suppressed[1].status, VexStatus::FalsePositive);
    assert_eq!(
        outcome.count_by_producer(),
        BTreeMap::from([("producer-ed25519.pub".to_owned(), 2)])
    );
    // Judged for the platform image only (not its index): the index statement
    // does not apply.
    let outcome = apply_vex(
        &findings,
        &[image.as_str()],
        &[VexSource {
            producer: ed.name(),
            document: &doc,
        }],
    );
    assert_eq!(outcome.suppressed.len(), 1);
}

#[test]
fn non_vex_inputs_are_refused() {
    assert!(parse_vex(b"{}").is_err());
    assert!(parse_vex(b"not json").is_err());
    assert!(
        parse_vex(br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"x","predicate":{"scanner":{}}}"#)
            .is_err()
    );
    assert!(
        parse_openvex_document(br#"{"@context":"https://schema.org","statements":[]}"#).is_err()
    );
}
