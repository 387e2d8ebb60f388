//! CycloneDX JSON with `vulnerabilities` (Trivy's `--format cyclonedx`, VEX BOMs).
//!
//! A vulnerability affecting several components is one finding per component
//! (DESIGN §3.3: counting is per finding). Its severity is the highest of its
//! ratings, as no rating is marked primary.

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    Finding, FindingsError, Report, ReportFormat, Scanner, charge, null_as_default, parse_time,
    severity_of,
};
use crate::severity::Severity;

/// Components nest; deeper ones are ignored rather than recursed into without bound.
const MAX_COMPONENT_DEPTH: usize = 16;

#[derive(Deserialize)]
pub(super) struct Bom {
    metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "null_as_default")]
    components: Vec<Component>,
    /// Absent in a plain SBOM, which says nothing about vulnerabilities.
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Deserialize)]
struct Metadata {
    timestamp: Option<String>,
    tools: Option<Tools>,
}

/// CycloneDX 1.4 lists tools; 1.5+ wraps them in `{components: [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Tools {
    Legacy(Vec<Tool>),
    Modern {
        #[serde(default, deserialize_with = "null_as_default")]
        components: Vec<Tool>,
    },
}

#[derive(Deserialize)]
struct Tool {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "bom-ref")]
    bom_ref: Option<String>,
    name: Option<String>,
    version: Option<String>,
    purl: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Vulnerability {
    id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    ratings: Vec<Rating>,
    #[serde(default, deserialize_with = "null_as_default")]
    affects: Vec<Affects>,
}

#[derive(Deserialize)]
struct Rating {
    severity: Option<String>,
    score: Option<f64>,
    method: Option<String>,
    vector: Option<String>,
}

#[derive(Deserialize)]
struct Affects {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default, deserialize_with = "null_as_default")]
    versions: Vec<AffectedVersion>,
}

#[derive(Deserialize)]
struct AffectedVersion {
    version: Option<String>,
    status: Option<String>,
}

pub(super) fn parse(bom: Bom, max_text: usize) -> Result<Report, FindingsError> {
    let mut report = Report::new(ReportFormat::CycloneDx);
    if let Some(meta) = &bom.metadata {
        report.scanned_at = parse_time(meta.timestamp.as_deref());
        let tool = match &meta.tools {
            Some(Tools::Legacy(tools)) => tools.first(),
            Some(Tools::Modern { components }) => components.first(),
            None => None,
        };
        report.scanner = tool.and_then(|t| {
            Some(Scanner {
                name: t.name.clone()?,
                version: t.version.clone(),
            })
        });
    }
    let mut text = 0;
    let mut components = HashMap::new();
    index_components(&bom.components, &mut components, 0);

    let Some(vulnerabilities) = bom.vulnerabilities else {
        return Err(FindingsError::NotFindings(
            "a CycloneDX SBOM without vulnerabilities",
        ));
    };
    for vuln in vulnerabilities {
        let word = vuln
            .ratings
            .iter()
            .filter_map(|r| r.severity.as_deref())
            .filter_map(|w| Severity::from_word(w).map(|s| (s, w)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, w)| w);
        let v3 = |r: &&Rating| r.method.as_deref().is_some_and(|m| m.starts_with("CVSSv3"));
        let score = vuln
            .ratings
            .iter()
            .filter(v3)
            .filter_map(|r| r.score)
            .reduce(f64::max);
        let vector = vuln
            .ratings
            .iter()
            .filter(v3)
            .find_map(|r| r.vector.as_deref());
        let (severity, cvss_score) = severity_of(word, score, vector);

        if vuln.affects.is_empty() {
            let finding = Finding {
                id: vuln.id,
                severity,
                cvss_score,
                package: None,
                installed_version: None,
                fixed_version: None,
                purl: None,
            };
            charge(&mut text, &finding, max_text)?;
            report.findings.push(finding);
            continue;
        }
        for affects in &vuln.affects {
            let component = components.get(affects.reference.as_str());
            let version_with = |status: &str| {
                affects
                    .versions
                    .iter()
                    .find(|v| v.status.as_deref() == Some(status))
                    .and_then(|v| v.version.clone())
            };
            let finding = Finding {
                id: vuln.id.clone(),
                severity,
                cvss_score,
                package: component.and_then(|c| c.name.clone()),
                installed_version: component
                    .and_then(|c| c.version.clone())
                    .or_else(|| version_with("affected")),
                fixed_version: version_with("unaffected"),
                purl: component.and_then(|c| c.purl.clone()),
            };
            charge(&mut text, &finding, max_text)?;
            report.findings.push(finding);
        }
    }
    Ok(report)
}

fn index_components<'a>(
    list: &'a [Component],
    out: &mut HashMap<&'a str, &'a Component>,
    depth: usize,
) {
    if depth >= MAX_COMPONENT_DEPTH {
        return;
    }
    for c in list {
        if let Some(r) = c.bom_ref.as_deref() {
            out.insert(r, c);
        }
        index_components(&c.components, out, depth + 1);
    }
}
