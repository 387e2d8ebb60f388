//! SARIF 2.1.0 as written by Trivy and Grype: one finding per result, its
//! severity read from the result's rule.
//!
//! Where each tool keeps its severity:
//! - Trivy: the rule's `properties.tags` hold the severity word (`"MEDIUM"`);
//!   Trivy 2020 also prefixes the rule id (`"[LOW] CVE-2011-3374"`).
//! - Grype: its own severity label is only in the rule's `shortDescription`,
//!   written from the fixed template `"<id> <severity> vulnerability for <package> package"`;
//!   `properties.security-severity` is the CVSS score, which can disagree with
//!   Grype's label (the score is used when the template is absent).
//! - Others: tags, then `security-severity`.
//!
//! Result message text is never read.

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    Finding, FindingsError, Report, ReportFormat, Scalar, Scanner, charge, null_as_default,
    parse_time, severity_of,
};
use crate::severity::Severity;

#[derive(Deserialize)]
pub(super) struct SarifLog {
    // Required: a document without `runs` is not SARIF, and must not read as "no findings".
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default, deserialize_with = "null_as_default")]
    results: Vec<SarifResult>,
    #[serde(default, deserialize_with = "null_as_default")]
    invocations: Vec<Invocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    end_time_utc: Option<String>,
    start_time_utc: Option<String>,
}

#[derive(Deserialize)]
struct Tool {
    driver: Driver,
}

#[derive(Deserialize)]
struct Driver {
    name: Option<String>,
    version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    short_description: Option<Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    properties: RuleProperties,
}

#[derive(Deserialize)]
struct Text {
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct RuleProperties {
    #[serde(default, deserialize_with = "null_as_default")]
    tags: Vec<String>,
    #[serde(rename = "security-severity")]
    security_severity: Option<Scalar>,
    #[serde(rename = "cvssv3_baseScore")]
    cvss_v3_base_score: Option<f64>,
    #[serde(rename = "cvssv3_vector")]
    cvss_v3_vector: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: Option<String>,
    rule_index: Option<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Producer {
    Trivy,
    Grype,
    Other,
}

pub(super) fn parse(log: SarifLog, max_text: usize) -> Result<Report, FindingsError> {
    let mut report = Report::new(ReportFormat::Sarif);
    let mut text = 0;
    for run in log.runs {
        let producer = match run
            .tool
            .driver
            .name
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("trivy") => Producer::Trivy,
            Some("grype") => Producer::Grype,
            _ => Producer::Other,
        };
        if report.scanner.is_none() {
            report.scanner = run.tool.driver.name.clone().map(|name| Scanner {
                name,
                version: run.tool.driver.version.clone(),
            });
        }
        if report.scanned_at.is_none() {
            report.scanned_at = run.invocations.iter().find_map(|i| {
                parse_time(i.end_time_utc.as_deref().or(i.start_time_utc.as_deref()))
            });
        }
        let rules = &run.tool.driver.rules;
        let by_id: HashMap<&str, usize> = rules
            .iter()
            .enumerate()
            .rev()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let described: Vec<RuleFacts> = rules.iter().map(|r| rule_facts(r, producer)).collect();
        for result in run.results {
            let index = result
                .rule_index
                .filter(|&i| {
                    i < rules.len() && result.rule_id.as_deref().is_none_or(|id| rules[i].id == id)
                })
                .or_else(|| {
                    result
                        .rule_id
                        .as_deref()
                        .and_then(|id| by_id.get(id).copied())
                });
            let facts = match index {
                Some(i) => described[i].clone(),
                // A result naming no known rule: its ruleId is all we have.
                None => RuleFacts {
                    id: result
                        .rule_id
                        .map(|id| strip_level_prefix(&id).0.to_owned())
                        .unwrap_or_default(),
                    severity: Severity::Unknown,
                    score: None,
                    package: None,
                },
            };
            if facts.id.is_empty() {
                continue;
            }
            let finding = Finding {
                id: facts.id,
                severity: facts.severity,
                cvss_score: facts.score,
                package: facts.package,
                installed_version: None,
                fixed_version: None,
                purl: None,
            };
            charge(&mut text, &finding, max_text)?;
            report.findings.push(finding);
        }
    }
    Ok(report)
}

#[derive(Clone)]
struct RuleFacts {
    id: String,
    severity: Severity,
    score: Option<f64>,
    package: Option<String>,
}

fn rule_facts(rule: &Rule, producer: Producer) -> RuleFacts {
    let props = &rule.properties;
    let score = props
        .cvss_v3_base_score
        .or_else(|| props.security_severity.as_ref().and_then(Scalar::as_f64));
    let (mut id, prefix_word) = strip_level_prefix(&rule.id);
    let mut package = None;
    let mut word = props
        .tags
        .iter()
        .map(String::as_str)
        .find(|t| Severity::from_word(t).is_some());
    if producer == Producer::Grype
        && let Some((vuln_id, grype_word, pkg)) = rule
            .short_description
            .as_ref()
            .and_then(|d| grype_template(d.text.as_deref()?))
    {
        if rule.id.starts_with(vuln_id) {
            id = vuln_id;
            package = Some(pkg.to_owned());
        }
        word = Some(grype_word);
    }
    let word = word.or(prefix_word);
    let (severity, score) = severity_of(word, score, props.cvss_v3_vector.as_deref());
    RuleFacts {
        id: id.to_owned(),
        severity,
        score,
        package,
    }
}

/// `"[LOW] CVE-2011-3374"` → (`"CVE-2011-3374"`, Some(`"LOW"`)).
fn strip_level_prefix(rule_id: &str) -> (&str, Option<&str>) {
    if let Some(rest) = rule_id.strip_prefix('[')
        && let Some((word, id)) = rest.split_once(']')
        && Severity::from_word(word).is_some()
    {
        return (id.trim(), Some(word));
    }
    (rule_id, None)
}

/// Grype's rule template: `"<id> <severity> vulnerability for <package> package"`.
fn grype_template(text: &str) -> Option<(&str, &str, &str)> {
    let mut words = text.splitn(4, ' ');
    let id = words.next()?;
    let severity = words.next().filter(|w| Severity::from_word(w).is_some())?;
    let rest = words
        .next()
        .filter(|w| *w == "vulnerability")
        .and(words.next())?;
    let package = rest.strip_prefix("for ")?.strip_suffix(" package")?;
    Some((id, severity, package))
}
