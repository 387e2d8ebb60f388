//! Import of the reference product's policy: one `defender.microsoft.com/v1alpha3`
//! `SecurityArtifactPolicy` holding an array of rules becomes one Portcullis
//! `SecurityArtifactPolicySpec` per rule (DESIGN §2, defender-spec.md §2.2).
//!
//! Unknown fields are refused rather than dropped, so an import never loses a
//! setting silently; values with no Portcullis equivalent are refused too.

use jiff::Timestamp;
use serde::Deserialize;

use crate::policy::{
    Exemption, ExemptionType, FindingsRequirements, IgnoredCve, MatchOperator, MatcherType,
    PolicyAction, RuleConditions, ScopeMatcher, SecurityArtifactPolicySpec, SeverityLimits,
    SpecError,
};

/// The API version this importer reads.
pub const DEFENDER_API_VERSION: &str = "defender.microsoft.com/v1alpha3";

/// Why a Defender document cannot be imported. Nothing is imported when any rule fails.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not JSON or YAML of the expected shape (unknown fields included).
    #[error("not a {DEFENDER_API_VERSION} SecurityArtifactPolicy: {0}")]
    Shape(String),
    /// Another apiVersion or kind.
    #[error(
        "expected apiVersion {DEFENDER_API_VERSION} kind SecurityArtifactPolicy, got {api_version} {kind}"
    )]
    WrongType {
        /// The document's apiVersion.
        api_version: String,
        /// The document's kind.
        kind: String,
    },
    /// A value Portcullis cannot represent.
    #[error("rule {rule:?}: {message}")]
    Unsupported {
        /// Name of the rule in the document.
        rule: String,
        /// What cannot be represented.
        message: String,
    },
    /// Two rules map to the same object name.
    #[error("rules {first:?} and {second:?} both map to the object name {name:?}")]
    DuplicateName {
        /// First rule name.
        first: String,
        /// Second rule name.
        second: String,
        /// The shared object name.
        name: String,
    },
    /// The converted rule is invalid.
    #[error("rule {rule:?}: {source}")]
    Invalid {
        /// Name of the rule in the document.
        rule: String,
        /// What is wrong.
        #[source]
        source: SpecError,
    },
}

/// The reference product's custom resource.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefenderPolicy {
    /// Must be `defender.microsoft.com/v1alpha3`.
    pub api_version: String,
    /// Must be `SecurityArtifactPolicy`.
    pub kind: String,
    /// The rules.
    pub spec: DefenderSpec,
}

/// `spec` of the reference product's policy.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefenderSpec {
    /// When the policy was last edited in the portal.
    #[serde(default)]
    pub policy_last_edit_time: Option<String>,
    /// The rules, strongest first.
    #[serde(default)]
    pub vulnerability_assessment_gated_deployment: Vec<DefenderRule>,
}

/// One rule of the reference product.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefenderRule {
    /// Unique rule name.
    pub name: String,
    /// `audit` (default) or `deny`.
    #[serde(default)]
    pub action: Option<String>,
    /// Conditions, exemptions and findings settings.
    #[serde(default)]
    pub configuration: DefenderConfiguration,
    /// Scope; empty is the whole cluster.
    #[serde(default)]
    pub scope: Vec<DefenderScope>,
}

/// `configuration` of a reference rule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefenderConfiguration {
    /// e.g. `365d`.
    #[serde(default)]
    pub maximum_va_file_age: Option<String>,
    /// Per-level limits.
    #[serde(default)]
    pub max_allowed_severities: Option<SeverityLimits>,
    /// CVEs that violate the rule.
    #[serde(default)]
    pub forbidden_cves: Vec<String>,
    /// CVEs removed before counting.
    #[serde(default)]
    pub ignored_cves: Vec<String>,
    /// Apply the action to images without findings.
    #[serde(default)]
    pub block_unscanned_images: bool,
    /// Exemptions, permanent or time-bound.
    #[serde(default)]
    pub exemptions: Vec<DefenderExemption>,
    /// Registries that pass untouched.
    #[serde(default)]
    pub unsupported_registries: Vec<String>,
}

/// An exemption of a reference rule.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefenderExemption {
    /// `timeBased` or `permanent`.
    #[serde(rename = "type")]
    pub exemption_type: String,
    /// A CVE ID, an image digest, a repository or a registry.
    pub value: String,
    /// Validity, required for `timeBased`.
    #[serde(default)]
    pub time_bound: Option<DefenderTimeBound>,
}

/// Validity window of a time-bound exemption.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefenderTimeBound {
    /// Start of validity.
    #[serde(default)]
    pub start_date: Option<Timestamp>,
    /// End of validity.
    pub end_date: Timestamp,
}

/// A scope entry of a reference rule.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefenderScope {
    /// e.g. `pod`, `namespace`.
    pub matcher_type: String,
    /// Glob values, ORed.
    pub any_of: Vec<String>,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedPolicy {
    /// `policyLastEditTime`, when present: a revision of the document.
    pub revision: Option<String>,
    /// One entry per rule, in document order.
    pub rules: Vec<ImportedRule>,
}

/// One imported rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedRule {
    /// The rule name as written in the document.
    pub source_name: String,
    /// A DNS-1123 name derived from `source_name`, usable in an object name.
    pub name: String,
    /// The converted rule.
    pub spec: SecurityArtifactPolicySpec,
}

/// Parses and converts a Defender document (JSON or YAML).
pub fn import_document(text: &str) -> Result<ImportedPolicy, ImportError> {
    let policy: DefenderPolicy =
        serde_saphyr::from_str(text).map_err(|e| ImportError::Shape(e.to_string()))?;
    import(&policy)
}

/// Converts a parsed Defender policy.
pub fn import(policy: &DefenderPolicy) -> Result<ImportedPolicy, ImportError> {
    if policy.api_version != DEFENDER_API_VERSION || policy.kind != "SecurityArtifactPolicy" {
        return Err(ImportError::WrongType {
            api_version: policy.api_version.clone(),
            kind: policy.kind.clone(),
        });
    }
    let mut rules: Vec<ImportedRule> = Vec::new();
    for (index, rule) in policy
        .spec
        .vulnerability_assessment_gated_deployment
        .iter()
        .enumerate()
    {
        let imported = import_rule(index, rule)?;
        if let Some(other) = rules.iter().find(|r| r.name == imported.name) {
            return Err(ImportError::DuplicateName {
                first: other.source_name.clone(),
                second: imported.source_name,
                name: imported.name,
            });
        }
        rules.push(imported);
    }
    Ok(ImportedPolicy {
        revision: policy.spec.policy_last_edit_time.clone(),
        rules,
    })
}

fn import_rule(index: usize, rule: &DefenderRule) -> Result<ImportedRule, ImportError> {
    let unsupported = |message: String| ImportError::Unsupported {
        rule: rule.name.clone(),
        message,
    };
    let action = match rule
        .action
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("audit") => PolicyAction::Audit,
        Some("deny") => PolicyAction::Deny,
        Some(other) => {
            return Err(unsupported(format!(
                "action {other:?} is neither audit nor deny"
            )));
        }
    };
    let cfg = &rule.configuration;

    let scope = rule
        .scope
        .iter()
        .map(|s| import_scope(s).map_err(&unsupported))
        .collect::<Result<Vec<_>, _>>()?;

    let mut ignored_cves: Vec<IgnoredCve> = cfg
        .ignored_cves
        .iter()
        .map(|id| IgnoredCve {
            id: id.clone(),
            expires: None,
            reason: None,
        })
        .collect();
    let mut exemptions = Vec::new();
    for ex in &cfg.exemptions {
        let (expires, reason) = match (ex.exemption_type.as_str(), &ex.time_bound) {
            ("permanent", _) => (None, "imported permanent exemption".to_owned()),
            ("timeBased", Some(tb)) => {
                // Portcullis exemptions end at the end of a UTC day; the window's
                // start has no equivalent and is kept in the reason text.
                let end = tb.end_date.to_zoned(jiff::tz::TimeZone::UTC).date();
                let reason = match tb.start_date {
                    Some(start) => format!("imported time-bound exemption, valid from {start}"),
                    None => "imported time-bound exemption".to_owned(),
                };
                (Some(end), reason)
            }
            ("timeBased", None) => {
                return Err(unsupported(
                    "a timeBased exemption needs timeBound".to_owned(),
                ));
            }
            (other, _) => {
                return Err(unsupported(format!(
                    "exemption type {other:?} is neither timeBased nor permanent"
                )));
            }
        };
        let value = ex.value.trim();
        if looks_like_vulnerability_id(value) {
            ignored_cves.push(IgnoredCve {
                id: value.to_owned(),
                expires,
                reason: Some(reason),
            });
            continue;
        }
        let exemption_type = if value.starts_with("sha256:") {
            ExemptionType::ImageDigest
        } else if value.contains('/') {
            ExemptionType::Repository
        } else {
            ExemptionType::Registry
        };
        exemptions.push(Exemption {
            exemption_type,
            key: None,
            operator: if value.contains('*') || value.contains('?') {
                MatchOperator::Glob
            } else {
                MatchOperator::Equals
            },
            value: value.to_owned(),
            expires,
            reason: Some(reason),
        });
    }

    let spec = SecurityArtifactPolicySpec {
        action,
        // Array order is the reference product's priority: the first rule is strongest.
        priority: i32::try_from(index).map_or(i32::MAX, |i| i.saturating_add(1)),
        enabled: true,
        description: None,
        scope,
        conditions: RuleConditions {
            max_allowed_severities: cfg.max_allowed_severities,
            forbidden_cves: cfg.forbidden_cves.clone(),
            allowed_registries: Vec::new(),
            fixable_only: false,
        },
        ignored_cves,
        exemptions,
        findings: FindingsRequirements {
            maximum_age: cfg.maximum_va_file_age.clone(),
            block_unscanned_images: cfg.block_unscanned_images,
            unsupported_registries: cfg.unsupported_registries.clone(),
            ..Default::default()
        },
    };
    spec.validate().map_err(|source| ImportError::Invalid {
        rule: rule.name.clone(),
        source,
    })?;
    Ok(ImportedRule {
        source_name: rule.name.clone(),
        name: dns_label(&rule.name),
        spec,
    })
}

fn import_scope(scope: &DefenderScope) -> Result<ScopeMatcher, String> {
    let matcher_type = match scope.matcher_type.to_ascii_lowercase().as_str() {
        "namespace" => MatcherType::Namespace,
        "pod" | "podname" => MatcherType::Pod,
        "deployment" | "workload" => MatcherType::Workload,
        "container" | "containername" => MatcherType::Container,
        "image" => MatcherType::Image,
        "registry" => MatcherType::Registry,
        "repository" => MatcherType::Repository,
        "kind" => MatcherType::Kind,
        "label" | "labels" | "podlabels" | "labelselector" => {
            return import_label_scope(scope);
        }
        other => {
            return Err(format!(
                "scope matcherType {other:?} has no Portcullis equivalent (cluster scoping belongs to the rules endpoint)"
            ));
        }
    };
    if scope.any_of.is_empty() {
        return Err(format!("scope {:?} has no values", scope.matcher_type));
    }
    Ok(ScopeMatcher {
        matcher_type,
        key: None,
        operator: MatchOperator::Glob,
        values: scope.any_of.clone(),
    })
}

/// Label scopes are written `key=value`; one Portcullis matcher reads one key.
fn import_label_scope(scope: &DefenderScope) -> Result<ScopeMatcher, String> {
    let mut key: Option<&str> = None;
    let mut values = Vec::new();
    for entry in &scope.any_of {
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| format!("label scope value {entry:?} is not key=value"))?;
        if key.is_some_and(|existing| existing != k) {
            return Err("label scope values name several keys; split them into rules".to_owned());
        }
        key = Some(k);
        values.push(v.to_owned());
    }
    let key = key.ok_or_else(|| "label scope has no values".to_owned())?;
    Ok(ScopeMatcher {
        matcher_type: MatcherType::Label,
        key: Some(key.to_owned()),
        operator: MatchOperator::Glob,
        values,
    })
}

fn looks_like_vulnerability_id(value: &str) -> bool {
    let upper = value.to_ascii_uppercase();
    [
        "CVE-", "GHSA-", "GO-", "RUSTSEC-", "PYSEC-", "OSV-", "ALAS", "DSA-", "RHSA-",
    ]
    .iter()
    .any(|p| upper.starts_with(p))
        && !value.contains('/')
}

/// Lower-case DNS-1123 label (at most 63 characters) derived from a free-text name.
pub fn dns_label(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars() {
        let ch = ch.to_ascii_lowercase();
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_owned();
    if trimmed.is_empty() {
        "rule".to_owned()
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The live object from the reference product's lab (defender-spec.md §2.2),
    /// with the elided second rule written out as the out-of-the-box default rule.
    const LAB_POLICY: &str = r#"{"apiVersion":"defender.microsoft.com/v1alpha3","kind":"SecurityArtifactPolicy",
 "metadata":{"name":"mdc-vulnerability-assessment-policy","annotations":{"updatetime":"12/02/2025 21:46:56"}},
 "spec":{"policyLastEditTime":"2025-12-02T21:46:47.000000+00:00",
  "vulnerabilityAssessmentGatedDeployment":[{
   "name":"MDC Lab Example","action":"deny",
   "configuration":{"blockUnscannedImages":true,"exemptions":[],"forbiddenCves":[],
     "ignoredCves":["CVE-1234-56789"],"maxAllowedSeverities":{"high":0},
     "maximumVaFileAge":"365d",
     "unsupportedRegistries":["mcr.microsoft.com","docker.io","public.ecr.aws","gcr.io","jfrog.io"]},
   "scope":[{"matcherType":"pod","anyOf":["*gate*"]}]},
   {"name":"Default vulnerability assessment rule","action":"audit",
    "configuration":{"maxAllowedSeverities":{"high":0},"maximumVaFileAge":"365d",
      "exemptions":[{"type":"timeBased","value":"CVE-2024-3094","timeBound":{"startDate":"2025-01-01T00:00:00Z","endDate":"2025-12-31T18:00:00Z"}},
                    {"type":"permanent","value":"myregistry.azurecr.io/team/app"}],
      "unsupportedRegistries":["mcr.microsoft.com"]},
    "scope":[]}]}}"#;

    #[test]
    fn lab_policy_imports_every_field() {
        let imported = import_document(LAB_POLICY).expect("imports");
        assert_eq!(
            imported.revision.as_deref(),
            Some("2025-12-02T21:46:47.000000+00:00")
        );
        assert_eq!(imported.rules.len(), 2);

        let lab = &imported.rules[0];
        assert_eq!(lab.source_name, "MDC Lab Example");
        assert_eq!(lab.name, "mdc-lab-example");
        let s = &lab.spec;
        assert_eq!(s.action, PolicyAction::Deny);
        assert_eq!(s.priority, 1);
        assert!(s.enabled);
        assert_eq!(
            s.scope,
            vec![ScopeMatcher {
                matcher_type: MatcherType::Pod,
                key: None,
                operator: MatchOperator::Glob,
                values: vec!["*gate*".into()],
            }]
        );
        assert_eq!(
            s.conditions.max_allowed_severities,
            Some(SeverityLimits {
                high: Some(0),
                ..Default::default()
            })
        );
        assert!(s.conditions.forbidden_cves.is_empty());
        assert_eq!(s.ignored_cves.len(), 1);
        assert_eq!(s.ignored_cves[0].id, "CVE-1234-56789");
        assert_eq!(s.ignored_cves[0].expires, None);
        assert!(s.exemptions.is_empty());
        assert_eq!(s.findings.maximum_age.as_deref(), Some("365d"));
        assert!(s.findings.block_unscanned_images);
        assert_eq!(
            s.findings.unsupported_registries,
            [
                "mcr.microsoft.com",
                "docker.io",
                "public.ecr.aws",
                "gcr.io",
                "jfrog.io"
            ]
        );

        let default = &imported.rules[1].spec;
        assert_eq!(default.action, PolicyAction::Audit);
        assert_eq!(default.priority, 2);
        assert!(!default.findings.block_unscanned_images);
        // The time-bound CVE exemption becomes an ignored CVE ending on the endDate's UTC day.
        let cve = default
            .ignored_cves
            .iter()
            .find(|c| c.id == "CVE-2024-3094")
            .expect("cve");
        assert_eq!(cve.expires, Some(jiff::civil::date(2025, 12, 31)));
        assert!(
            cve.reason
                .as_deref()
                .unwrap_or_default()
                .contains("2025-01-01")
        );
        assert_eq!(default.exemptions.len(), 1);
        assert_eq!(
            default.exemptions[0].exemption_type,
            ExemptionType::Repository
        );
        assert_eq!(
            default.exemptions[0].value,
            "myregistry.azurecr.io/team/app"
        );
        assert_eq!(default.exemptions[0].expires, None);
    }

    #[test]
    fn unknown_fields_and_matchers_are_refused_not_dropped() {
        let extra = LAB_POLICY.replace(
            "\"blockUnscannedImages\":true",
            "\"blockUnscannedImages\":true,\"newField\":1",
        );
        assert!(
            matches!(import_document(&extra), Err(ImportError::Shape(m)) if m.contains("newField"))
        );

        let cluster =
            LAB_POLICY.replace("\"matcherType\":\"pod\"", "\"matcherType\":\"clusterName\"");
        assert!(
            matches!(import_document(&cluster), Err(ImportError::Unsupported { rule, .. }) if rule == "MDC Lab Example")
        );

        let v2 = LAB_POLICY.replace("v1alpha3", "v1alpha2");
        assert!(matches!(
            import_document(&v2),
            Err(ImportError::WrongType { .. })
        ));
    }

    #[test]
    fn rules_with_colliding_names_are_refused() {
        let dup = LAB_POLICY.replace("Default vulnerability assessment rule", "mdc lab  example");
        assert!(matches!(
            import_document(&dup),
            Err(ImportError::DuplicateName { .. })
        ));
    }

    #[test]
    fn label_scopes_and_block_only_rules_import() {
        let doc = r#"
apiVersion: defender.microsoft.com/v1alpha3
kind: SecurityArtifactPolicy
metadata: {name: p}
spec:
  vulnerabilityAssessmentGatedDeployment:
  - name: unscanned
    action: Deny
    configuration: {blockUnscannedImages: true}
    scope:
    - {matcherType: podLabels, anyOf: ["tier=front*", "tier=edge"]}
"#;
        let imported = import_document(doc).expect("imports");
        let spec = &imported.rules[0].spec;
        assert_eq!(spec.action, PolicyAction::Deny);
        assert_eq!(spec.scope[0].key.as_deref(), Some("tier"));
        assert_eq!(spec.scope[0].values, ["front*", "edge"]);
    }

    #[test]
    fn dns_labels_are_valid_names() {
        assert_eq!(dns_label("MDC Lab Example"), "mdc-lab-example");
        assert_eq!(dns_label("--Ünïcode__rule!!"), "n-code-rule");
        assert_eq!(dns_label("!!!"), "rule");
        assert!(dns_label(&"x".repeat(200)).len() <= 63);
    }
}
