//! Snyk JSON (`snyk test --json`), as found inside cosign vuln attestations.

use serde::Deserialize;

use super::{Finding, Report, ReportFormat, Scalar, non_empty, null_as_default, severity_of};

#[derive(Deserialize)]
pub(super) struct SnykReport {
    #[serde(default, deserialize_with = "null_as_default")]
    vulnerabilities: Vec<SnykVulnerability>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnykVulnerability {
    id: String,
    severity: Option<String>,
    cvss_score: Option<Scalar>,
    package_name: Option<String>,
    version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    fixed_in: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    identifiers: SnykIdentifiers,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
struct SnykIdentifiers {
    #[serde(default, deserialize_with = "null_as_default")]
    cve: Vec<String>,
}

pub(super) fn parse(doc: SnykReport) -> Report {
    let mut report = Report::new(ReportFormat::SnykJson);
    for v in doc.vulnerabilities {
        let (severity, cvss_score) = severity_of(
            v.severity.as_deref(),
            v.cvss_score.as_ref().and_then(Scalar::as_f64),
            None,
        );
        // Snyk's own IDs (SNYK-...) name a CVE when there is one; rules are written with CVEs.
        let id = v.identifiers.cve.into_iter().next().unwrap_or(v.id);
        report.findings.push(Finding {
            id,
            severity,
            cvss_score,
            package: non_empty(v.package_name),
            installed_version: non_empty(v.version),
            fixed_version: non_empty(Some(v.fixed_in.join(", "))),
            purl: None,
        });
    }
    report
}
