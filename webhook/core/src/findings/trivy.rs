//! Trivy JSON, SchemaVersion 2: `Results[].Vulnerabilities[]`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    Finding, Report, ReportFormat, Scalar, Scanner, non_empty, null_as_default, scalar_time,
    severity_of,
};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TrivyReport {
    // Required, so a document that is not Trivy's cannot read as "no findings".
    #[allow(dead_code, reason = "presence is what matters")]
    schema_version: u32,
    created_at: Option<Scalar>,
    trivy: Option<TrivyInfo>,
    #[serde(default, deserialize_with = "null_as_default")]
    results: Vec<TrivyResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyInfo {
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    #[serde(default, deserialize_with = "null_as_default")]
    vulnerabilities: Vec<TrivyVulnerability>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyVulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    pkg_name: Option<String>,
    installed_version: Option<String>,
    fixed_version: Option<String>,
    severity: Option<String>,
    #[serde(rename = "CVSS", default, deserialize_with = "null_as_default")]
    cvss: BTreeMap<String, TrivyCvss>,
    pkg_identifier: Option<TrivyPkgIdentifier>,
}

#[derive(Deserialize)]
struct TrivyPkgIdentifier {
    #[serde(rename = "PURL")]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct TrivyCvss {
    #[serde(rename = "V3Score")]
    v3_score: Option<f64>,
    #[serde(rename = "V3Vector")]
    v3_vector: Option<String>,
}

pub(super) fn parse(doc: TrivyReport) -> Report {
    let mut report = Report::new(ReportFormat::TrivyJson);
    report.scanned_at = scalar_time(doc.created_at.as_ref());
    report.scanner = Some(Scanner {
        name: "Trivy".into(),
        version: doc.trivy.and_then(|t| t.version),
    });
    for vuln in doc.results.into_iter().flat_map(|r| r.vulnerabilities) {
        // NVD's score when present, else the highest vendor score.
        let nvd = vuln.cvss.get("nvd");
        let score = nvd.and_then(|c| c.v3_score).or_else(|| {
            vuln.cvss
                .values()
                .filter_map(|c| c.v3_score)
                .reduce(f64::max)
        });
        let vector = nvd
            .and_then(|c| c.v3_vector.as_deref())
            .or_else(|| vuln.cvss.values().find_map(|c| c.v3_vector.as_deref()));
        let (severity, cvss_score) = severity_of(vuln.severity.as_deref(), score, vector);
        report.findings.push(Finding {
            id: vuln.vulnerability_id,
            severity,
            cvss_score,
            package: non_empty(vuln.pkg_name),
            installed_version: non_empty(vuln.installed_version),
            fixed_version: non_empty(vuln.fixed_version),
            purl: non_empty(vuln.pkg_identifier.and_then(|p| p.purl)),
        });
    }
    report
}
