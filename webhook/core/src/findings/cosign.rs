//! The cosign vuln predicate (`https://cosign.sigstore.dev/attestation/vuln/v1`):
//! a scanner's own output embedded in `scanner.result`.

use serde::Deserialize;
use serde_json::Value;

use super::intoto::ScanMetadata;
use super::{
    FindingsError, Report, ReportFormat, Scanner, cyclonedx, from_value, grype, sarif, snyk, trivy,
};

#[derive(Deserialize)]
pub(super) struct CosignPredicate {
    scanner: CosignScanner,
    metadata: Option<ScanMetadata>,
}

#[derive(Deserialize)]
struct CosignScanner {
    uri: Option<String>,
    version: Option<String>,
    #[serde(default)]
    result: Value,
}

pub(super) fn parse(predicate: CosignPredicate, max_text: usize) -> Result<Report, FindingsError> {
    let result = predicate.scanner.result;
    let has = |key: &str| result.get(key).is_some();
    let mut report = if result.is_null() {
        Report::new(ReportFormat::EmptyCosignVuln)
    } else if has("SchemaVersion") || has("Results") {
        trivy::parse(from_value(result, "Trivy")?)
    } else if has("matches") {
        grype::parse(from_value(result, "Grype")?)
    } else if has("runs") {
        sarif::parse(from_value(result, "SARIF")?, max_text)?
    } else if has("bomFormat") {
        cyclonedx::parse(from_value(result, "CycloneDX")?, max_text)?
    } else if has("vulnerabilities") {
        snyk::parse(from_value(result, "Snyk")?)
    } else {
        return Err(FindingsError::UnknownFormat);
    };
    // The attestation's own scan time and scanner win over the embedded report's.
    if let Some(t) = predicate.metadata.as_ref().and_then(ScanMetadata::time) {
        report.scanned_at = Some(t);
    }
    if let Some(uri) = predicate.scanner.uri.filter(|u| !u.is_empty()) {
        report.scanner = Some(Scanner {
            name: uri,
            version: predicate.scanner.version.filter(|v| !v.is_empty()),
        });
    }
    Ok(report)
}
