//! Normalisation of vulnerability reports into one model (DESIGN §3.3).
//!
//! A report arrives as the bytes of an OCI artifact layer, with whatever the
//! artifact says about itself (media type, artifact type, in-toto predicate
//! type). [`parse_report`] picks the format from those hints, falling back to the
//! content, and deserialises straight into typed structs (no intermediate
//! `serde_json::Value` for the large formats). Every failure is a typed
//! [`FindingsError`]; input size is capped and serde_json's recursion limit
//! bounds nesting.

mod cosign;
mod cyclonedx;
mod grype;
mod intoto;
mod sarif;
mod snyk;
mod trivy;
pub mod vex;

use jiff::Timestamp;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};

use crate::severity::{Severity, cvss_base_score};

/// One vulnerability in one package.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Vulnerability ID (`CVE-...`, `GHSA-...`, ...).
    pub id: String,
    /// Normalised severity.
    pub severity: Severity,
    /// CVSS base score, when the report gives or implies one.
    pub cvss_score: Option<f64>,
    /// Affected package.
    pub package: Option<String>,
    /// Installed version of the package.
    pub installed_version: Option<String>,
    /// Version that fixes it, when one exists.
    pub fixed_version: Option<String>,
    /// Package URL of the affected package, when the report gives one (Trivy
    /// `PkgIdentifier.PURL`, Grype `artifact.purl`, CycloneDX component `purl`):
    /// what VEX statements about subcomponents are matched against.
    pub purl: Option<String>,
}

impl Finding {
    /// True when a fixed version is known (`fixableOnly`).
    pub fn is_fixable(&self) -> bool {
        self.fixed_version
            .as_deref()
            .is_some_and(|v| !v.trim().is_empty())
    }
}

/// Which scanner produced a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanner {
    /// Name or URI, e.g. `Trivy`, `grype`, `pkg:github/aquasecurity/trivy@0.74.0`.
    pub name: String,
    /// Version, when given.
    pub version: Option<String>,
}

/// Format of the findings payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportFormat {
    /// Trivy JSON (SchemaVersion 2).
    TrivyJson,
    /// Grype JSON.
    GrypeJson,
    /// SARIF 2.1.0 (Trivy, Grype or another tool).
    Sarif,
    /// CycloneDX JSON with `vulnerabilities`.
    CycloneDx,
    /// Snyk JSON (seen inside cosign vuln attestations).
    SnykJson,
    /// The in-toto vulns predicate (v0.1/v0.2): the reference product's artifact.
    InTotoVulns,
    /// A cosign vuln predicate with no scanner result.
    EmptyCosignVuln,
}

/// A normalised report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Format of the findings themselves (the innermost payload).
    pub format: ReportFormat,
    /// In-toto predicate type, when the report came as an attestation.
    pub predicate_type: Option<String>,
    /// True when it came inside a DSSE envelope.
    pub dsse: bool,
    /// The scanner, when named.
    pub scanner: Option<Scanner>,
    /// When the scan finished (or started, or the report was written).
    pub scanned_at: Option<Timestamp>,
    /// The findings, one per vulnerability and package.
    pub findings: Vec<Finding>,
}

impl Report {
    fn new(format: ReportFormat) -> Self {
        Report {
            format,
            predicate_type: None,
            dsse: false,
            scanner: None,
            scanned_at: None,
            findings: Vec::new(),
        }
    }

    /// Number of findings at `level` (not cumulative).
    pub fn count(&self, level: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == level).count()
    }
}

/// Limits on untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Most findings accepted in one report.
    pub max_findings: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 32 * 1024 * 1024,
            max_findings: 200_000,
        }
    }
}

/// Why a report cannot be used (`MalformedFindings`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindingsError {
    /// Larger than [`Limits::max_bytes`].
    #[error("report is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More findings than [`Limits::max_findings`].
    #[error("report has more than {0} findings")]
    TooManyFindings(usize),
    /// Not JSON (or nested too deeply for the parser).
    #[error("report is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but no known report format.
    #[error(
        "report format not recognised (expected Trivy, Grype, SARIF, CycloneDX, in-toto vulns or cosign vuln)"
    )]
    UnknownFormat,
    /// A known format with fields of the wrong type or missing.
    #[error("malformed {format} report: {message}")]
    Shape {
        /// The format it was read as.
        format: &'static str,
        /// What serde said.
        message: String,
    },
    /// An in-toto statement whose predicate carries no vulnerabilities.
    #[error("in-toto predicate type {0:?} carries no vulnerability findings")]
    UnsupportedPredicate(String),
    /// A DSSE envelope whose payload is not base64 or not an in-toto statement.
    #[error("DSSE envelope: {0}")]
    Envelope(String),
    /// A document that is not a findings report (e.g. OpenVEX).
    #[error("document is {0}, not a vulnerability report")]
    NotFindings(&'static str),
    /// Findings that would hold more text than [`Limits::max_bytes`] (one
    /// SARIF rule or CycloneDX vulnerability copied into very many results).
    #[error("report expands to more than {0} bytes of findings")]
    Expands(usize),
}

/// What the registry says about an artifact, used to pick its format.
#[derive(Debug, Clone, Copy, Default)]
pub struct FormatHint<'a> {
    /// The artifact's `artifactType`, or its config media type.
    pub artifact_type: Option<&'a str>,
    /// The layer's media type.
    pub media_type: Option<&'a str>,
    /// The `in-toto.io/predicate-type` annotation.
    pub predicate_type: Option<&'a str>,
}

/// The in-toto vulns predicate types (the reference product's artifact).
pub const INTOTO_VULNS_V02: &str = "https://in-toto.io/attestation/vulns/v0.2";
/// The cosign vuln predicate type.
pub const COSIGN_VULN_V1: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

/// The time an in-toto statement's predicate says its content was made (scan
/// finish or start, report or VEX document creation), used as the signed time
/// of a verified attestation. `None` when the predicate names no time.
pub fn statement_time(statement: &[u8]) -> Option<Timestamp> {
    intoto::statement_time(statement)
}

/// Parses a report with default limits.
pub fn parse_report(bytes: &[u8], hint: FormatHint<'_>) -> Result<Report, FindingsError> {
    parse_report_with(bytes, hint, Limits::default())
}

/// Parses a report.
pub fn parse_report_with(
    bytes: &[u8],
    hint: FormatHint<'_>,
    limits: Limits,
) -> Result<Report, FindingsError> {
    if bytes.len() > limits.max_bytes {
        return Err(FindingsError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let report = match format_from_hint(hint) {
        Some(Kind::Sarif) => sarif::parse(from_slice(bytes, "SARIF")?, limits.max_bytes)?,
        Some(Kind::CycloneDx) => {
            cyclonedx::parse(from_slice(bytes, "CycloneDX")?, limits.max_bytes)?
        }
        Some(Kind::Trivy) => trivy::parse(from_slice(bytes, "Trivy")?),
        Some(Kind::Grype) => grype::parse(from_slice(bytes, "Grype")?),
        _ => parse_sniffed(bytes, limits, 0)?,
    };
    if report.findings.len() > limits.max_findings {
        return Err(FindingsError::TooManyFindings(limits.max_findings));
    }
    Ok(report)
}

enum Kind {
    Trivy,
    Grype,
    Sarif,
    CycloneDx,
}

fn format_from_hint(hint: FormatHint<'_>) -> Option<Kind> {
    let types = [hint.artifact_type, hint.media_type];
    let any = |needle: &str| types.iter().flatten().any(|t| t.contains(needle));
    if any("sarif") {
        Some(Kind::Sarif)
    } else if any("cyclonedx") {
        Some(Kind::CycloneDx)
    } else if any("trivy") {
        Some(Kind::Trivy)
    } else if any("grype") {
        Some(Kind::Grype)
    } else {
        // in-toto statements, DSSE envelopes and everything else: the content says.
        None
    }
}

/// Top-level keys that tell the formats apart; values are skipped, not built.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "SchemaVersion")]
    schema_version: Option<IgnoredAny>,
    #[serde(rename = "Results")]
    results: Option<IgnoredAny>,
    matches: Option<IgnoredAny>,
    runs: Option<IgnoredAny>,
    #[serde(rename = "bomFormat")]
    bom_format: Option<IgnoredAny>,
    #[serde(rename = "specVersion")]
    spec_version: Option<IgnoredAny>,
    #[serde(rename = "predicateType")]
    predicate_type: Option<String>,
    #[serde(rename = "payloadType")]
    payload_type: Option<IgnoredAny>,
    payload: Option<IgnoredAny>,
    predicate: Option<IgnoredAny>,
    scanner: Option<IgnoredAny>,
    vulnerabilities: Option<IgnoredAny>,
    #[serde(rename = "@context")]
    context: Option<IgnoredAny>,
    statements: Option<IgnoredAny>,
}

fn parse_sniffed(bytes: &[u8], limits: Limits, depth: u8) -> Result<Report, FindingsError> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| json_error(&e, None))?;
    if probe.payload_type.is_some() && probe.payload.is_some() {
        if depth > 0 {
            return Err(FindingsError::Envelope("nested DSSE envelope".into()));
        }
        return intoto::parse_envelope(bytes, limits);
    }
    if let Some(predicate_type) = probe.predicate_type {
        return intoto::parse_statement(bytes, &predicate_type, limits.max_bytes);
    }
    if probe.schema_version.is_some() || probe.results.is_some() {
        return Ok(trivy::parse(from_slice(bytes, "Trivy")?));
    }
    if probe.matches.is_some() {
        return Ok(grype::parse(from_slice(bytes, "Grype")?));
    }
    if probe.runs.is_some() {
        return sarif::parse(from_slice(bytes, "SARIF")?, limits.max_bytes);
    }
    if probe.bom_format.is_some()
        || (probe.spec_version.is_some() && probe.vulnerabilities.is_some())
    {
        return cyclonedx::parse(from_slice(bytes, "CycloneDX")?, limits.max_bytes);
    }
    if probe.context.is_some() && probe.statements.is_some() {
        return Err(FindingsError::NotFindings("an OpenVEX document"));
    }
    if probe.predicate.is_some() {
        // `{"predicate": {...}}` with no statement around it (the cosign spec's example).
        let wrapped: BarePredicate = from_slice(bytes, "predicate")?;
        return intoto::parse_bare_predicate(wrapped.predicate, limits.max_bytes);
    }
    if probe.scanner.is_some() {
        return intoto::parse_bare_predicate(from_slice(bytes, "predicate")?, limits.max_bytes);
    }
    if probe.vulnerabilities.is_some() {
        return Ok(snyk::parse(from_slice(bytes, "Snyk")?));
    }
    Err(FindingsError::UnknownFormat)
}

#[derive(Deserialize)]
struct BarePredicate {
    predicate: serde_json::Value,
}

/// Deserialises bytes into a format's typed shape.
fn from_slice<T: DeserializeOwned>(bytes: &[u8], format: &'static str) -> Result<T, FindingsError> {
    serde_json::from_slice(bytes).map_err(|e| json_error(&e, Some(format)))
}

/// Deserialises an embedded JSON value (a cosign scanner result) into a typed shape.
fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    format: &'static str,
) -> Result<T, FindingsError> {
    T::deserialize(value).map_err(|e| FindingsError::Shape {
        format,
        message: e.to_string(),
    })
}

fn json_error(err: &serde_json::Error, format: Option<&'static str>) -> FindingsError {
    use serde_json::error::Category;
    match (err.classify(), format) {
        (Category::Syntax | Category::Eof | Category::Io, _) => {
            FindingsError::InvalidJson(err.to_string())
        }
        (Category::Data, Some(format)) => FindingsError::Shape {
            format,
            message: err.to_string(),
        },
        (Category::Data, None) => FindingsError::UnknownFormat,
    }
}

/// Parses an RFC 3339 time; the zero times some tools write mean "unknown".
fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    let ts: Timestamp = text?.trim().parse().ok()?;
    (ts.as_second() > 0).then_some(ts)
}

/// A time written as RFC 3339 text or as Unix seconds (an early Trivy `CreatedAt`).
fn scalar_time(value: Option<&Scalar>) -> Option<Timestamp> {
    match value? {
        Scalar::Text(text) => parse_time(Some(text)),
        Scalar::Number(n) if n.is_finite() && *n > 0.0 && *n < 1e11 => {
            Timestamp::from_second(n.trunc() as i64).ok()
        }
        Scalar::Number(_) => None,
    }
}

/// A field that tools write as a string or as a number (`"7.5"` or `7.5`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Number(f64),
    Text(String),
}

impl Scalar {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Number(n) => Some(*n),
            Scalar::Text(t) => t.trim().parse().ok(),
        }
    }

    fn as_text(&self) -> Option<&str> {
        match self {
            Scalar::Text(t) => Some(t),
            Scalar::Number(_) => None,
        }
    }
}

/// Deserialises `null` as the type's default (tools write `"Vulnerabilities": null`).
fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// Severity from what a format gives, strongest evidence first: the tool's own
/// word, else a CVSS score, else a CVSS vector's computed base score.
fn severity_of(
    word: Option<&str>,
    score: Option<f64>,
    vector: Option<&str>,
) -> (Severity, Option<f64>) {
    let score = score
        .filter(|s| s.is_finite())
        .or_else(|| vector.and_then(cvss_base_score));
    let from_word = word
        .and_then(Severity::from_word)
        .filter(|s| *s != Severity::Unknown);
    let severity = from_word
        .or_else(|| score.and_then(Severity::from_cvss_score))
        .unwrap_or(Severity::Unknown);
    (severity, score)
}

/// Adds a finding's text to what a report's findings hold so far, refusing
/// more than `limit` in all: SARIF results copy their rule's facts and
/// CycloneDX `affects` entries their vulnerability's and component's, so a
/// short entry naming a long rule could otherwise expand a megabyte of report
/// into gigabytes of findings.
fn charge(spent: &mut usize, finding: &Finding, limit: usize) -> Result<(), FindingsError> {
    let text = [
        &finding.package,
        &finding.installed_version,
        &finding.fixed_version,
        &finding.purl,
    ]
    .into_iter()
    .flatten()
    .fold(finding.id.len(), |n, s| n.saturating_add(s.len()));
    *spent = spent.saturating_add(text);
    if *spent > limit {
        return Err(FindingsError::Expands(limit));
    }
    Ok(())
}

/// Empty strings mean "absent" in most scanner outputs.
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}
