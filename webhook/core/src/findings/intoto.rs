//! In-toto attestations: DSSE envelopes, statements, and the vulns predicate
//! (`https://in-toto.io/attestation/vulns/v0.2`, the reference product's
//! artifact; v0.1 has the same shape).

use base64::Engine as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    Finding, FindingsError, Limits, Report, ReportFormat, Scalar, Scanner, cosign, cyclonedx,
    from_slice, from_value, non_empty, null_as_default, parse_sniffed, parse_time, severity_of,
};
use crate::severity::{Severity, cvss_base_score};

const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload_type: String,
    payload: String,
}

#[derive(Deserialize)]
struct Statement<P> {
    predicate: P,
}

/// What a predicate type says about its content.
enum PredicateKind {
    Vulns,
    CosignVuln,
    CycloneDx,
}

fn predicate_kind(predicate_type: &str) -> Option<PredicateKind> {
    // Older cosign wrote predicate types without a scheme.
    let t = predicate_type
        .strip_prefix("https://")
        .or_else(|| predicate_type.strip_prefix("http://"))
        .unwrap_or(predicate_type);
    if t.starts_with("in-toto.io/attestation/vulns/") {
        Some(PredicateKind::Vulns)
    } else if t.starts_with("cosign.sigstore.dev/attestation/vuln/") {
        Some(PredicateKind::CosignVuln)
    } else if t.starts_with("cyclonedx.org/bom") {
        Some(PredicateKind::CycloneDx)
    } else {
        None
    }
}

pub(super) fn parse_envelope(bytes: &[u8], limits: Limits) -> Result<Report, FindingsError> {
    let envelope: Envelope = from_slice(bytes, "DSSE envelope")?;
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(FindingsError::Envelope(format!(
            "payload type {:?} is not {INTOTO_PAYLOAD_TYPE}",
            envelope.payload_type
        )));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope.payload.as_bytes())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(envelope.payload.as_bytes()))
        .map_err(|e| FindingsError::Envelope(format!("payload is not base64: {e}")))?;
    let mut report = parse_sniffed(&payload, limits, 1)?;
    report.dsse = true;
    Ok(report)
}

pub(super) fn parse_statement(
    bytes: &[u8],
    predicate_type: &str,
    max_text: usize,
) -> Result<Report, FindingsError> {
    fn predicate<P: DeserializeOwned>(
        bytes: &[u8],
        format: &'static str,
    ) -> Result<P, FindingsError> {
        Ok(from_slice::<Statement<P>>(bytes, format)?.predicate)
    }
    let mut report = match predicate_kind(predicate_type) {
        Some(PredicateKind::Vulns) => parse_vulns(predicate(bytes, "in-toto vulns")?),
        Some(PredicateKind::CosignVuln) => {
            cosign::parse(predicate(bytes, "cosign vuln")?, max_text)?
        }
        Some(PredicateKind::CycloneDx) => {
            cyclonedx::parse(predicate(bytes, "CycloneDX")?, max_text)?
        }
        None => {
            return Err(FindingsError::UnsupportedPredicate(
                predicate_type.to_owned(),
            ));
        }
    };
    report.predicate_type = Some(predicate_type.to_owned());
    Ok(report)
}

/// A predicate with no statement around it: a result list means the in-toto
/// vulns predicate, anything else the cosign one.
pub(super) fn parse_bare_predicate(
    predicate: Value,
    max_text: usize,
) -> Result<Report, FindingsError> {
    let is_vulns = predicate
        .get("scanner")
        .and_then(|s| s.get("result"))
        .is_some_and(Value::is_array);
    if is_vulns {
        Ok(parse_vulns(from_value(predicate, "in-toto vulns")?))
    } else {
        cosign::parse(from_value(predicate, "cosign vuln")?, max_text)
    }
}

#[derive(Deserialize)]
pub(super) struct VulnsPredicate {
    scanner: VulnsScanner,
    metadata: Option<ScanMetadata>,
}

#[derive(Deserialize)]
struct VulnsScanner {
    uri: Option<String>,
    version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    result: Vec<VulnsResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScanMetadata {
    pub(super) scan_started_on: Option<String>,
    pub(super) scan_finished_on: Option<String>,
}

impl ScanMetadata {
    pub(super) fn time(&self) -> Option<jiff::Timestamp> {
        parse_time(self.scan_finished_on.as_deref())
            .or_else(|| parse_time(self.scan_started_on.as_deref()))
    }
}

/// The time a statement's predicate says its content was made: the scan's
/// `metadata.scanFinishedOn` (else `scanStartedOn`) of the vulns and cosign vuln
/// predicates, a CycloneDX `metadata.timestamp`, an OpenVEX document's
/// `timestamp`, else the embedded report's own creation time.
pub(super) fn statement_time(statement: &[u8]) -> Option<jiff::Timestamp> {
    #[derive(Deserialize)]
    struct Timed {
        predicate: Option<TimedPredicate>,
    }
    #[derive(Deserialize)]
    struct TimedPredicate {
        metadata: Option<MetadataTimes>,
        timestamp: Option<String>,
    }
    #[derive(Deserialize)]
    struct MetadataTimes {
        #[serde(flatten)]
        scan: ScanMetadata,
        timestamp: Option<String>,
    }
    let predicate = serde_json::from_slice::<Timed>(statement).ok()?.predicate?;
    let from_metadata = predicate
        .metadata
        .as_ref()
        .and_then(|m| m.scan.time().or_else(|| parse_time(m.timestamp.as_deref())));
    from_metadata
        .or_else(|| parse_time(predicate.timestamp.as_deref()))
        .or_else(|| {
            super::parse_report(statement, super::FormatHint::default())
                .ok()?
                .scanned_at
        })
}

/// One result of the vulns predicate. Besides the spec's `id` and `severity`,
/// the reference product's scanner writes `leadingSeverityScore`,
/// `vulnerablePackage`, `detectedVersion` and `fixVersion`, at the top level or
/// in `annotations`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VulnsResult {
    id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    severity: Vec<SeverityEntry>,
    #[serde(default)]
    annotations: Value,
    leading_severity_score: Option<String>,
    vulnerable_package: Option<String>,
    detected_version: Option<String>,
    fix_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeverityEntry {
    score: Option<Scalar>,
    textual_score: Option<String>,
}

fn parse_vulns(predicate: VulnsPredicate) -> Report {
    let mut report = Report::new(ReportFormat::InTotoVulns);
    report.scanned_at = predicate.metadata.as_ref().and_then(ScanMetadata::time);
    report.scanner = predicate.scanner.uri.clone().map(|name| Scanner {
        name,
        version: predicate.scanner.version.clone(),
    });
    for r in predicate.scanner.result {
        let annotation = |key: &str| annotation_text(&r.annotations, key);
        let leading = r
            .leading_severity_score
            .clone()
            .or_else(|| annotation("leadingSeverityScore"));
        // Entries are words ("medium"), numbers ("5.2") or CVSS vectors; take the strongest of each kind.
        let word = leading
            .as_deref()
            .and_then(Severity::from_word)
            .or_else(|| {
                r.severity
                    .iter()
                    .flat_map(|e| {
                        [
                            e.textual_score.as_deref(),
                            e.score.as_ref().and_then(Scalar::as_text),
                        ]
                    })
                    .flatten()
                    .filter_map(Severity::from_word)
                    .max()
            });
        let score = r
            .severity
            .iter()
            .filter_map(|e| {
                let s = e.score.as_ref()?;
                s.as_f64().or_else(|| s.as_text().and_then(cvss_base_score))
            })
            .reduce(f64::max);
        let (severity, cvss_score) = severity_of(word.map(Severity::as_str), score, None);
        let package = non_empty(
            r.vulnerable_package
                .or_else(|| annotation("vulnerablePackage")),
        );
        // The reference product writes a purl or a CPE here.
        let purl = package.clone().filter(|p| p.starts_with("pkg:"));
        report.findings.push(Finding {
            id: r.id,
            severity,
            cvss_score,
            package,
            purl,
            installed_version: non_empty(
                r.detected_version.or_else(|| annotation("detectedVersion")),
            ),
            fixed_version: non_empty(r.fix_version.or_else(|| annotation("fixVersion"))),
        });
    }
    report
}

/// Annotations are a map or a list of maps.
fn annotation_text(annotations: &Value, key: &str) -> Option<String> {
    let from_map = |v: &Value| v.get(key).and_then(Value::as_str).map(str::to_owned);
    match annotations {
        Value::Object(_) => from_map(annotations),
        Value::Array(items) => items.iter().find_map(from_map),
        _ => None,
    }
}
