//! VEX: statements that a vulnerability does or does not affect a product,
//! from OpenVEX documents and CycloneDX VEX (DESIGN §2, `applyVex`).
//!
//! [`parse_vex`] reads either format (bare, or as the predicate of an in-toto
//! statement) into [`VexDocument`]s; [`apply_vex`] decides which findings of an
//! image they suppress. Both are pure. The caller passes only documents it
//! trusts (verified for one of the rule's producers) and that are about the
//! judged image (attached to it, or a statement whose subject names it).

use jiff::Timestamp;
use serde::Deserialize;

use super::{Finding, FindingsError, Limits, from_slice, null_as_default, parse_time};

/// Status of a VEX statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    /// Not affected.
    NotAffected,
    /// Affected.
    Affected,
    /// Fixed.
    Fixed,
    /// Under investigation.
    UnderInvestigation,
    /// CycloneDX `false_positive`: the finding is wrong.
    FalsePositive,
}

impl VexStatus {
    /// True for the statuses that remove a finding: `not_affected`, `fixed`
    /// (CycloneDX `resolved`) and `false_positive`.
    pub fn suppresses(self) -> bool {
        matches!(
            self,
            VexStatus::NotAffected | VexStatus::Fixed | VexStatus::FalsePositive
        )
    }

    /// The OpenVEX spelling (`not_affected`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            VexStatus::NotAffected => "not_affected",
            VexStatus::Affected => "affected",
            VexStatus::Fixed => "fixed",
            VexStatus::UnderInvestigation => "under_investigation",
            VexStatus::FalsePositive => "false_positive",
        }
    }
}

/// One VEX statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexStatement {
    /// Vulnerability name (CVE ID).
    pub vulnerability: String,
    /// Other names of the vulnerability (OpenVEX `aliases`, CycloneDX
    /// `references[].id`).
    pub aliases: Vec<String>,
    /// The status.
    pub status: VexStatus,
    /// Product identifiers (purls or image references).
    pub products: Vec<String>,
    /// The products with their subcomponents (OpenVEX `subcomponents`).
    pub scopes: Vec<VexProduct>,
    /// When the statement was made: its own timestamp (OpenVEX statement
    /// `timestamp`, CycloneDX `analysis.lastUpdated`), else the document's.
    pub timestamp: Option<Timestamp>,
    /// OpenVEX `justification` or CycloneDX `analysis.justification`.
    pub justification: Option<String>,
}

/// A product of a statement and the subcomponents it is narrowed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexProduct {
    /// The product: an image (`pkg:oci/...@sha256%3A...`, `sha256:...`, a
    /// reference with a digest) or a package purl.
    pub id: String,
    /// Packages within the product the statement is about; empty: the whole
    /// product.
    pub subcomponents: Vec<String>,
}

/// The format of a VEX document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VexFormat {
    /// OpenVEX.
    OpenVex,
    /// CycloneDX with `vulnerabilities[].analysis`.
    CycloneDx,
}

/// A parsed VEX document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexDocument {
    /// The format.
    pub format: VexFormat,
    /// OpenVEX `@id` or CycloneDX `serialNumber`.
    pub id: Option<String>,
    /// Document time (OpenVEX `timestamp`/`last_updated`, CycloneDX
    /// `metadata.timestamp`).
    pub timestamp: Option<Timestamp>,
    /// The statements, in document order.
    pub statements: Vec<VexStatement>,
}

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "@context")]
    context: String,
    #[serde(rename = "@id")]
    id: Option<String>,
    timestamp: Option<String>,
    last_updated: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    statements: Vec<Statement>,
}

#[derive(Deserialize)]
struct Statement {
    vulnerability: Vulnerability,
    status: VexStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    products: Vec<Product>,
    timestamp: Option<String>,
    last_updated: Option<String>,
    justification: Option<String>,
}

/// OpenVEX 0.2 names vulnerabilities as objects; 0.0.x as plain strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Vulnerability {
    Named {
        name: String,
        #[serde(default, deserialize_with = "null_as_default")]
        aliases: Vec<String>,
    },
    Plain(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Product {
    Identified {
        #[serde(rename = "@id")]
        id: String,
        #[serde(default, deserialize_with = "null_as_default")]
        subcomponents: Vec<Product>,
    },
    Plain(String),
}

impl Product {
    fn into_parts(self) -> (String, Vec<String>) {
        match self {
            Product::Identified { id, subcomponents } => (
                id,
                subcomponents
                    .into_iter()
                    .map(|s| s.into_parts().0)
                    .collect(),
            ),
            Product::Plain(id) => (id, Vec::new()),
        }
    }
}

fn check_size(bytes: &[u8]) -> Result<(), FindingsError> {
    let limits = Limits::default();
    if bytes.len() > limits.max_bytes {
        return Err(FindingsError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    Ok(())
}

/// Parses an OpenVEX document into its statements.
pub fn parse_openvex(bytes: &[u8]) -> Result<Vec<VexStatement>, FindingsError> {
    Ok(parse_openvex_document(bytes)?.statements)
}

/// Parses an OpenVEX document.
pub fn parse_openvex_document(bytes: &[u8]) -> Result<VexDocument, FindingsError> {
    check_size(bytes)?;
    openvex_from(from_slice(bytes, "OpenVEX")?)
}

fn openvex_from(doc: Document) -> Result<VexDocument, FindingsError> {
    if !doc.context.contains("openvex") {
        return Err(FindingsError::Shape {
            format: "OpenVEX",
            message: format!("@context {:?} is not OpenVEX", doc.context),
        });
    }
    let doc_time = parse_time(doc.last_updated.as_deref()).or(parse_time(doc.timestamp.as_deref()));
    let statements = doc
        .statements
        .into_iter()
        .map(|s| {
            let (vulnerability, aliases) = match s.vulnerability {
                Vulnerability::Named { name, aliases } => (name, aliases),
                Vulnerability::Plain(name) => (name, Vec::new()),
            };
            let scopes: Vec<VexProduct> = s
                .products
                .into_iter()
                .map(|p| {
                    let (id, subcomponents) = p.into_parts();
                    VexProduct { id, subcomponents }
                })
                .collect();
            VexStatement {
                vulnerability,
                aliases,
                status: s.status,
                products: scopes.iter().map(|p| p.id.clone()).collect(),
                scopes,
                timestamp: parse_time(s.last_updated.as_deref())
                    .or(parse_time(s.timestamp.as_deref()))
                    .or(doc_time),
                justification: s.justification,
            }
        })
        .collect();
    Ok(VexDocument {
        format: VexFormat::OpenVex,
        id: doc.id,
        timestamp: doc_time,
        statements,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdxBom {
    serial_number: Option<String>,
    metadata: Option<CdxMetadata>,
    #[serde(default, deserialize_with = "null_as_default")]
    components: Vec<CdxComponent>,
    #[serde(default, deserialize_with = "null_as_default")]
    vulnerabilities: Vec<CdxVulnerability>,
}

#[derive(Deserialize)]
struct CdxMetadata {
    timestamp: Option<String>,
    component: Option<CdxComponent>,
}

#[derive(Deserialize)]
struct CdxComponent {
    #[serde(rename = "bom-ref")]
    bom_ref: Option<String>,
    purl: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    components: Vec<CdxComponent>,
}

#[derive(Deserialize)]
struct CdxVulnerability {
    id: String,
    analysis: Option<CdxAnalysis>,
    #[serde(default, deserialize_with = "null_as_default")]
    affects: Vec<CdxAffects>,
    #[serde(default, deserialize_with = "null_as_default")]
    references: Vec<CdxReference>,
    updated: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdxAnalysis {
    state: Option<String>,
    justification: Option<String>,
    last_updated: Option<String>,
    first_issued: Option<String>,
}

#[derive(Deserialize)]
struct CdxAffects {
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Deserialize)]
struct CdxReference {
    id: Option<String>,
}

/// Parses a CycloneDX VEX: every vulnerability with an `analysis.state` is a
/// statement about the components in its `affects` (BOM-links and bom-refs
/// resolved to the component's purl). Vulnerabilities without an analysis
/// state say nothing and are skipped.
pub fn parse_cyclonedx_vex(bytes: &[u8]) -> Result<VexDocument, FindingsError> {
    check_size(bytes)?;
    cyclonedx_from(from_slice(bytes, "CycloneDX VEX")?)
}

fn cyclonedx_from(bom: CdxBom) -> Result<VexDocument, FindingsError> {
    let mut refs = std::collections::HashMap::new();
    let roots = bom
        .metadata
        .as_ref()
        .and_then(|m| m.component.as_ref())
        .into_iter()
        .chain(bom.components.iter());
    for c in roots {
        index_components(c, &mut refs, 0);
    }
    let doc_time = bom
        .metadata
        .as_ref()
        .and_then(|m| parse_time(m.timestamp.as_deref()));
    let mut statements = Vec::new();
    for v in bom.vulnerabilities {
        let Some(analysis) = v.analysis else { continue };
        let status = match analysis.state.as_deref() {
            Some("not_affected") => VexStatus::NotAffected,
            Some("false_positive") => VexStatus::FalsePositive,
            Some("resolved" | "resolved_with_pedigree") => VexStatus::Fixed,
            Some("exploitable") => VexStatus::Affected,
            Some("in_triage") => VexStatus::UnderInvestigation,
            _ => continue,
        };
        let products: Vec<String> = v
            .affects
            .iter()
            .map(|a| {
                // A BOM-link `urn:cdx:<serial>/<version>#<bom-ref>` names a bom-ref.
                let local = a
                    .reference
                    .strip_prefix("urn:cdx:")
                    .and_then(|r| r.split_once('#'))
                    .map_or(a.reference.as_str(), |(_, r)| r);
                let local = percent_decode(local);
                refs.get(local.as_str()).cloned().unwrap_or(local)
            })
            .collect();
        statements.push(VexStatement {
            vulnerability: v.id,
            aliases: v.references.into_iter().filter_map(|r| r.id).collect(),
            status,
            scopes: products
                .iter()
                .map(|id| VexProduct {
                    id: id.clone(),
                    subcomponents: Vec::new(),
                })
                .collect(),
            products,
            timestamp: parse_time(analysis.last_updated.as_deref())
                .or(parse_time(analysis.first_issued.as_deref()))
                .or(parse_time(v.updated.as_deref()))
                .or(doc_time),
            justification: analysis.justification,
        });
    }
    Ok(VexDocument {
        format: VexFormat::CycloneDx,
        id: bom.serial_number,
        timestamp: doc_time,
        statements,
    })
}

fn index_components(
    c: &CdxComponent,
    out: &mut std::collections::HashMap<String, String>,
    depth: usize,
) {
    if depth >= 16 {
        return;
    }
    if let (Some(r), Some(purl)) = (&c.bom_ref, &c.purl) {
        out.insert(r.clone(), purl.clone());
    }
    for child in &c.components {
        index_components(child, out, depth + 1);
    }
}

/// Parses a VEX document in either format, bare or as the predicate of an
/// in-toto statement (what a verified DSSE payload holds).
pub fn parse_vex(bytes: &[u8]) -> Result<VexDocument, FindingsError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "@context")]
        context: Option<serde::de::IgnoredAny>,
        #[serde(rename = "bomFormat")]
        bom_format: Option<serde::de::IgnoredAny>,
        #[serde(rename = "predicateType")]
        predicate_type: Option<serde::de::IgnoredAny>,
        predicate: Option<serde_json::Value>,
    }
    check_size(bytes)?;
    let probe: Probe = from_slice(bytes, "VEX")?;
    if probe.predicate_type.is_some() {
        let predicate = probe.predicate.ok_or_else(|| FindingsError::Shape {
            format: "VEX",
            message: "in-toto statement without a predicate".into(),
        })?;
        if predicate.get("@context").is_some() {
            return openvex_from(super::from_value(predicate, "OpenVEX")?);
        }
        if predicate.get("bomFormat").is_some() || predicate.get("vulnerabilities").is_some() {
            return cyclonedx_from(super::from_value(predicate, "CycloneDX VEX")?);
        }
        return Err(FindingsError::NotFindings(
            "an in-toto statement without VEX",
        ));
    }
    if probe.context.is_some() {
        return parse_openvex_document(bytes);
    }
    if probe.bom_format.is_some() {
        return parse_cyclonedx_vex(bytes);
    }
    Err(FindingsError::UnknownFormat)
}

/// A VEX document and the producer it was verified for.
#[derive(Debug, Clone, Copy)]
pub struct VexSource<'a> {
    /// Name of the TrustedProducer that signed it.
    pub producer: &'a str,
    /// The document.
    pub document: &'a VexDocument,
}

/// One suppressed finding and the statement that suppressed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// Index of the finding in the slice given to [`apply_vex`].
    pub finding: usize,
    /// The producer of the document.
    pub producer: String,
    /// Index of the document in the sources given to [`apply_vex`].
    pub document: usize,
    /// The document's id, when it has one.
    pub document_id: Option<String>,
    /// Index of the statement in the document.
    pub statement: usize,
    /// The statement's status (one that suppresses).
    pub status: VexStatus,
    /// The statement's justification.
    pub justification: Option<String>,
}

/// Which findings VEX suppresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VexOutcome {
    /// One entry per suppressed finding, in finding order.
    pub suppressed: Vec<Suppression>,
}

impl VexOutcome {
    /// True when finding `index` is suppressed.
    pub fn is_suppressed(&self, index: usize) -> bool {
        self.suppressed
            .binary_search_by_key(&index, |s| s.finding)
            .is_ok()
    }

    /// Suppressed findings per producer, for messages.
    pub fn count_by_producer(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for s in &self.suppressed {
            *out.entry(s.producer.clone()).or_insert(0) += 1;
        }
        out
    }

    /// The findings that remain.
    pub fn remaining<'f>(&self, findings: &'f [Finding]) -> Vec<&'f Finding> {
        findings
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_suppressed(*i))
            .map(|(_, f)| f)
            .collect()
    }
}

/// Decides which `findings` of an image (`image_digests`: its platform
/// manifest, index, ... as `sha256:<hex>`) the VEX documents suppress.
///
/// A statement applies to a finding when it names the finding's vulnerability
/// (or an alias) and one of its products covers the finding: an image product
/// whose digest is the image's (a product naming another image's digest never
/// applies), narrowed to a subcomponent matching the finding's package when it
/// lists subcomponents; or a package product matching the finding's package.
/// Of the statements that apply to a finding, the latest (by timestamp; a
/// statement without one is the oldest; ties go to the later source) decides,
/// as the OpenVEX specification says: the finding is suppressed when that
/// statement's status is `not_affected`, `fixed` or `false_positive`.
pub fn apply_vex(
    findings: &[Finding],
    image_digests: &[&str],
    sources: &[VexSource<'_>],
) -> VexOutcome {
    let digests: Vec<String> = image_digests.iter().filter_map(|d| digest_hex(d)).collect();
    let mut suppressed = Vec::new();
    for (fi, finding) in findings.iter().enumerate() {
        let mut latest: Option<(Option<Timestamp>, usize, usize)> = None;
        for (di, source) in sources.iter().enumerate() {
            for (si, st) in source.document.statements.iter().enumerate() {
                let names = st.vulnerability.eq_ignore_ascii_case(&finding.id)
                    || st
                        .aliases
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(&finding.id));
                if !names || !st.scopes.iter().any(|p| covers(p, finding, &digests)) {
                    continue;
                }
                // Later or equal time wins, so a later source breaks ties.
                if latest.is_none_or(|(t, _, _)| st.timestamp >= t) {
                    latest = Some((st.timestamp, di, si));
                }
            }
        }
        if let Some((_, di, si)) = latest {
            let source = sources[di];
            let st = &source.document.statements[si];
            if st.status.suppresses() {
                suppressed.push(Suppression {
                    finding: fi,
                    producer: source.producer.to_owned(),
                    document: di,
                    document_id: source.document.id.clone(),
                    statement: si,
                    status: st.status,
                    justification: st.justification.clone(),
                });
            }
        }
    }
    VexOutcome { suppressed }
}

/// Does a product (with its subcomponents) cover this finding of the image?
fn covers(product: &VexProduct, finding: &Finding, image: &[String]) -> bool {
    match image_digest(&product.id) {
        Some(hex) => {
            image.iter().any(|d| d.eq_ignore_ascii_case(&hex))
                && (product.subcomponents.is_empty()
                    || product
                        .subcomponents
                        .iter()
                        .any(|s| package_matches(s, finding)))
        }
        None => {
            if product.subcomponents.is_empty() {
                package_matches(&product.id, finding)
            } else {
                product
                    .subcomponents
                    .iter()
                    .any(|s| package_matches(s, finding))
            }
        }
    }
}

/// The sha256 digest an image product names: `sha256:<hex>`,
/// `pkg:oci/name@sha256%3A<hex>?...`, `registry/repo@sha256:<hex>`.
fn image_digest(id: &str) -> Option<String> {
    let decoded = percent_decode(id);
    if let Some(hex) = digest_hex(&decoded) {
        return Some(hex);
    }
    let is_oci = decoded.starts_with("pkg:oci/") || decoded.starts_with("pkg:docker/");
    let after_at = decoded.rsplit_once('@').map(|(_, v)| v)?;
    let version = after_at.split(['?', '#']).next().unwrap_or(after_at);
    let hex = digest_hex(version)?;
    (is_oci || !decoded.starts_with("pkg:")).then_some(hex)
}

fn digest_hex(d: &str) -> Option<String> {
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A package URL split into what identifies a package.
#[derive(Debug, PartialEq, Eq)]
struct Purl {
    kind: String,
    namespace: Option<String>,
    name: String,
    version: Option<String>,
}

fn parse_purl(text: &str) -> Option<Purl> {
    let rest = text.strip_prefix("pkg:")?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (path, version) = match rest.rsplit_once('@') {
        Some((p, v)) => (p, Some(percent_decode(v))),
        None => (rest, None),
    };
    let (kind, path) = path.split_once('/')?;
    let (namespace, name) = match path.rsplit_once('/') {
        Some((ns, n)) => (Some(percent_decode(ns).to_ascii_lowercase()), n),
        None => (None, path),
    };
    Some(Purl {
        kind: kind.to_ascii_lowercase(),
        namespace,
        name: percent_decode(name).to_ascii_lowercase(),
        version,
    })
}

/// Does a subcomponent or package product name the finding's package? By purl
/// when the finding has one (type, namespace, name; version when the statement
/// gives one; qualifiers ignored); else by package name and installed version.
fn package_matches(id: &str, finding: &Finding) -> bool {
    let Some(want) = parse_purl(id) else {
        return finding
            .package
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(id));
    };
    let version_ok = |have: Option<&str>| match (&want.version, have) {
        (None, _) => true,
        (Some(w), Some(h)) => w == h,
        (Some(_), None) => false,
    };
    if let Some(have) = finding.purl.as_deref().and_then(parse_purl) {
        return have.kind == want.kind
            && have.namespace == want.namespace
            && have.name == want.name
            && version_ok(have.version.as_deref());
    }
    finding
        .package
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case(&want.name))
        && version_ok(finding.installed_version.as_deref())
}

/// Decodes `%XX` escapes (purls write `sha256%3A...`, `libstdc%2B%2B6`).
/// Written by hand: a dozen lines, not worth a dependency.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
