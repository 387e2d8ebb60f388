//! Grype JSON: `matches[]{vulnerability, artifact}`.

use serde::Deserialize;

use super::{
    Finding, Report, ReportFormat, Scanner, non_empty, null_as_default, parse_time, severity_of,
};

#[derive(Deserialize)]
pub(super) struct GrypeReport {
    // Required, so a document that is not Grype's cannot read as "no findings".
    matches: Vec<GrypeMatch>,
    descriptor: Option<GrypeDescriptor>,
}

#[derive(Deserialize)]
struct GrypeDescriptor {
    name: Option<String>,
    version: Option<String>,
    timestamp: Option<String>,
}

#[derive(Deserialize)]
struct GrypeMatch {
    vulnerability: GrypeVulnerability,
    artifact: Option<GrypeArtifact>,
}

#[derive(Deserialize)]
struct GrypeVulnerability {
    id: String,
    severity: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    cvss: Vec<GrypeCvss>,
    fix: Option<GrypeFix>,
}

#[derive(Deserialize)]
struct GrypeCvss {
    version: Option<String>,
    vector: Option<String>,
    metrics: Option<GrypeMetrics>,
}

#[derive(Deserialize)]
struct GrypeMetrics {
    #[serde(rename = "baseScore")]
    base_score: Option<f64>,
}

#[derive(Deserialize)]
struct GrypeFix {
    #[serde(default, deserialize_with = "null_as_default")]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct GrypeArtifact {
    name: Option<String>,
    version: Option<String>,
    purl: Option<String>,
}

pub(super) fn parse(doc: GrypeReport) -> Report {
    let mut report = Report::new(ReportFormat::GrypeJson);
    if let Some(d) = doc.descriptor {
        report.scanned_at = parse_time(d.timestamp.as_deref());
        report.scanner = Some(Scanner {
            name: d.name.unwrap_or_else(|| "grype".into()),
            version: d.version,
        });
    }
    for m in doc.matches {
        let v = m.vulnerability;
        let v3 = || {
            v.cvss
                .iter()
                .filter(|c| c.version.as_deref().is_some_and(|s| s.starts_with('3')))
        };
        let score = v3()
            .filter_map(|c| c.metrics.as_ref()?.base_score)
            .reduce(f64::max);
        let vector = v3().find_map(|c| c.vector.as_deref());
        let (severity, cvss_score) = severity_of(v.severity.as_deref(), score, vector);
        let fixed = v.fix.map(|f| f.versions.join(", "));
        let (package, installed, purl) = m
            .artifact
            .map_or((None, None, None), |a| (a.name, a.version, a.purl));
        report.findings.push(Finding {
            id: v.id,
            severity,
            cvss_score,
            package: non_empty(package),
            installed_version: non_empty(installed),
            fixed_version: non_empty(fixed),
            purl: non_empty(purl),
        });
    }
    report
}
