//! VEX documents (OpenVEX and CycloneDX VEX, bare or as an in-toto
//! statement's predicate), and the report reader that must refuse OpenVEX as
//! "not findings" rather than crash. A parsed document is applied to
//! findings named after its own statements: every suppression names a
//! finding once, in finding order (`is_suppressed` searches them), with a
//! status that suppresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::findings::Finding;
use portcullis_core::findings::vex::{
    VexDocument, VexSource, apply_vex, parse_cyclonedx_vex, parse_openvex, parse_openvex_document,
    parse_vex,
};
use portcullis_core::severity::Severity;
use portcullis_core_fuzz::{limits_for, media, parse_checked};

const DIGEST: &str = "sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff";

fn apply(document: &VexDocument) {
    let mut findings: Vec<Finding> = Vec::new();
    for st in document.statements.iter().take(16) {
        let subcomponent = st.scopes.iter().flat_map(|p| &p.subcomponents).next();
        for purl in [None, subcomponent.cloned()] {
            findings.push(Finding {
                id: st.vulnerability.clone(),
                severity: Severity::High,
                cvss_score: None,
                package: Some("pkg".into()),
                installed_version: Some("1.0".into()),
                fixed_version: None,
                purl,
            });
        }
    }
    let sources = [
        VexSource {
            producer: "a",
            document,
        },
        VexSource {
            producer: "b",
            document,
        },
    ];
    let outcome = apply_vex(&findings, &[DIGEST, "sha256:00"], &sources);
    assert!(
        outcome
            .suppressed
            .windows(2)
            .all(|w| w[0].finding < w[1].finding),
        "suppressions out of finding order"
    );
    for s in &outcome.suppressed {
        assert!(s.finding < findings.len() && s.status.suppresses());
        assert!(outcome.is_suppressed(s.finding));
    }
    assert_eq!(
        outcome.remaining(&findings).len() + outcome.suppressed.len(),
        findings.len()
    );
}

fuzz_target!(|data: &[u8]| {
    match parse_openvex(data) {
        Ok(statements) => {
            for s in &statements {
                let _ = (s.vulnerability.len(), s.status.as_str(), s.products.len());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    for parsed in [
        parse_vex(data),
        parse_openvex_document(data),
        parse_cyclonedx_vex(data),
    ] {
        match parsed {
            Ok(document) => apply(&document),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let _ = parse_checked(
        data,
        media("application/vnd.openvex+json"),
        limits_for(data),
    );
});
