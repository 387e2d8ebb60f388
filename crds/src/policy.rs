//! `SecurityArtifactPolicy`: one gating rule per object (DESIGN §2).

use jiff::civil::Date;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A vulnerability gating rule: which workloads it covers (`scope`), what makes an
/// image violate it (`conditions`), what is exempt, and what happens on a
/// violation (`action`).
///
/// Rules are evaluated together by the Portcullis admission webhook. Any violated
/// `Deny` rule denies the image; otherwise any violated `Audit` rule admits it with
/// a warning. `priority` orders rules (lower is stronger) for reporting: the
/// violation shown to the user is the most severe one, from the strongest rule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "SecurityArtifactPolicy",
    plural = "securityartifactpolicies",
    shortname = "sap",
    category = "portcullis",
    status = "SecurityArtifactPolicyStatus",
    doc = "A Portcullis vulnerability gating rule: images of workloads in scope that meet a condition are audited or denied at admission.",
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.conditions.maxAllowedSeverities) || (has(self.conditions.forbiddenCves) && size(self.conditions.forbiddenCves) > 0) || (has(self.conditions.allowedRegistries) && size(self.conditions.allowedRegistries) > 0) || (has(self.findings) && has(self.findings.blockUnscannedImages) && self.findings.blockUnscannedImages)"
).message("at least one condition is required: conditions.maxAllowedSeverities, conditions.forbiddenCves, conditions.allowedRegistries or findings.blockUnscannedImages"))]
pub struct SecurityArtifactPolicySpec {
    /// What happens to an image that violates this rule: `Audit` admits it with a
    /// warning, an Event and a log line; `Deny` rejects the request.
    pub action: PolicyAction,

    /// Strength of this rule; lower is stronger. When several rules are violated the
    /// one reported is the most severe violation of the strongest rule. Ties break by
    /// name.
    #[serde(default = "default_priority")]
    pub priority: i32,

    /// Whether the rule is evaluated at all.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Free text for people: why this rule exists, who owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// Which containers this rule covers. Every matcher must match (AND); an empty
    /// list covers the whole cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<ScopeMatcher>,

    /// What makes an image violate this rule. At least one condition is required
    /// (or `findings.blockUnscannedImages`).
    #[serde(default)]
    pub conditions: RuleConditions,

    /// Vulnerabilities removed from the findings before the conditions are counted,
    /// each optionally until a date.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_cves: Vec<IgnoredCve>,

    /// Images or workloads that skip this rule entirely, each optionally until a date.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemptions: Vec<Exemption>,

    /// How vulnerability findings are found and judged usable.
    #[serde(default)]
    pub findings: FindingsRequirements,
}

fn default_priority() -> i32 {
    100
}

fn default_true() -> bool {
    true
}

/// The action a rule takes on a violating image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PolicyAction {
    /// Admit the image, with a warning, an Event and a log line.
    Audit,
    /// Reject the admission request.
    Deny,
}

/// One scope condition: the selected attribute of the container must match one of
/// `values` under `operator`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.matcherType != 'Label' || has(self.key)").message("a Label matcher needs a key"),
    validation = Rule::new("self.matcherType == 'Label' || !has(self.key)").message("key is only meaningful for a Label matcher")
)]
pub struct ScopeMatcher {
    /// The attribute to match: `Namespace`, `Pod` (pod name), `Workload` (name of the
    /// owning Deployment, StatefulSet, DaemonSet, Job or CronJob, or of the object
    /// itself), `Kind` (kind of the admitted object), `Label` (value of label `key`
    /// on the pod or pod template), `Container` (container name), `Image` (the full
    /// normalised reference, e.g. `docker.io/library/nginx:1.27`), `Registry` (e.g.
    /// `docker.io`) or `Repository` (registry and path, e.g. `docker.io/library/nginx`).
    pub matcher_type: MatcherType,

    /// Label key, for `matcherType: Label` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,

    /// How `values` are compared. `Glob` (the default) understands `*` (any run of
    /// characters, `/` included) and `?` (one character). `NotEquals` matches when
    /// the attribute equals none of the values.
    #[serde(default)]
    pub operator: MatchOperator,

    /// Values to compare against; the matcher holds when any of them matches
    /// (except `NotEquals`, see `operator`).
    #[schemars(length(min = 1))]
    pub values: Vec<String>,
}

/// The attribute a scope matcher reads.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum MatcherType {
    /// Namespace of the admitted object.
    Namespace,
    /// Name of the pod (for pod templates, the template's name or the workload name).
    Pod,
    /// Name of the owning workload, or of the admitted object when it is a workload.
    Workload,
    /// Kind of the admitted object, e.g. `Deployment`.
    Kind,
    /// A label of the pod or pod template (with `key`).
    Label,
    /// Name of the container.
    Container,
    /// The full normalised image reference.
    Image,
    /// The image's registry host, e.g. `myregistry.azurecr.io`.
    Registry,
    /// The image's registry and repository path, e.g. `docker.io/library/nginx`.
    Repository,
}

/// How a matcher or exemption compares a value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum MatchOperator {
    /// Exactly equal.
    Equals,
    /// Equal to none of the values.
    NotEquals,
    /// Starts with the value.
    StartsWith,
    /// Ends with the value.
    EndsWith,
    /// Contains the value.
    Contains,
    /// Shell-style pattern: `*` is any run of characters, `?` one character.
    #[default]
    Glob,
}

/// The conditions of a rule. An image violates the rule when any condition holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleConditions {
    /// Largest number of findings allowed at each level. Counts are cumulative: `high: 0`
    /// is violated by any High or Critical finding. Negligible and Unknown findings
    /// never count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_allowed_severities: Option<SeverityLimits>,

    /// Vulnerability IDs (CVE, GHSA, ...) that violate the rule when present at any
    /// severity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forbidden_cves: Vec<String>,

    /// Registries images may come from (glob patterns, e.g. `*.azurecr.io`). An image
    /// from any other registry violates the rule, whatever its findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_registries: Vec<String>,

    /// Count only findings that have a fixed version (for `maxAllowedSeverities`).
    #[serde(default)]
    pub fixable_only: bool,
}

/// Per-level limits on finding counts (cumulative from Critical down to the level).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.critical) || has(self.high) || has(self.medium) || has(self.low)"
).message("set at least one of critical, high, medium, low"))]
pub struct SeverityLimits {
    /// Largest number of Critical findings allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<u32>,
    /// Largest number of High or Critical findings allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<u32>,
    /// Largest number of Medium, High or Critical findings allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<u32>,
    /// Largest number of Low, Medium, High or Critical findings allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<u32>,
}

/// A vulnerability ignored by this rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredCve {
    /// The vulnerability ID, e.g. `CVE-2024-3094` or `GHSA-xxxx-xxxx-xxxx`.
    #[schemars(length(min = 1))]
    pub id: String,
    /// Last day (UTC) the vulnerability is ignored; it counts again from the next day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Date>,
    /// Why it is ignored (ticket, owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An image or workload that skips this rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'Label' || has(self.key)").message("a Label exemption needs a key"),
    validation = Rule::new("self.type == 'Label' || !has(self.key)").message("key is only meaningful for a Label exemption")
)]
pub struct Exemption {
    /// What is compared: `Registry`, `Repository` (registry and path), `ImageDigest`
    /// (`sha256:...`), `Namespace`, `Workload`, `Pod` or `Label` (with `key`).
    #[serde(rename = "type")]
    pub exemption_type: ExemptionType,
    /// Label key, for `type: Label` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// How `value` is compared (default `Equals`).
    #[serde(default = "default_exemption_operator")]
    pub operator: MatchOperator,
    /// The value compared against.
    #[schemars(length(min = 1))]
    pub value: String,
    /// Last day (UTC) of the exemption; it ends at the end of that day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Date>,
    /// Why the exemption exists (ticket, owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn default_exemption_operator() -> MatchOperator {
    MatchOperator::Equals
}

/// What an exemption compares.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ExemptionType {
    /// The image's registry host.
    Registry,
    /// The image's registry and repository path.
    Repository,
    /// The image's manifest digest (`sha256:...`).
    ImageDigest,
    /// Namespace of the admitted object.
    Namespace,
    /// Name of the owning workload.
    Workload,
    /// Name of the pod.
    Pod,
    /// A label of the pod or pod template (with `key`).
    Label,
}

/// Requirements on the vulnerability findings attached to an image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.applyVex) || !self.applyVex || (has(self.trustedProducers) && size(self.trustedProducers) > 0)"
).message("applyVex requires trustedProducers: unsigned VEX would let anyone who can push to the registry suppress vulnerabilities"))]
pub struct FindingsRequirements {
    /// Oldest findings still used, as a number and a unit (`d`, `h`, `m`, `s`), e.g.
    /// `365d`. Older findings count as missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,6}(d|h|m|s))+$"))]
    pub maximum_age: Option<String>,

    /// Apply this rule's action to images with no usable findings (none attached,
    /// or all older than `maximumAge`), with reason `NoFindings` or `StaleFindings`.
    #[serde(default)]
    pub block_unscanned_images: bool,

    /// Registries (glob patterns) whose images pass this rule untouched, e.g. public
    /// registries that carry no findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported_registries: Vec<String>,

    /// Names of `TrustedProducer` objects. When set, only artifacts (findings and
    /// VEX) whose signature verifies for one of them are evidence for this rule;
    /// when artifacts exist but none verifies, the image has no usable findings,
    /// with reason `UntrustedFindings`. Empty: any attached findings are used,
    /// signed or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 253)))]
    pub trusted_producers: Vec<String>,

    /// Let VEX statements (OpenVEX or CycloneDX VEX) signed by one of
    /// `trustedProducers` suppress findings: a finding whose vulnerability the
    /// latest statement for the image or package marks `not_affected` or `fixed`
    /// (CycloneDX: `not_affected`, `false_positive`, `resolved`) is not counted.
    /// Requires `trustedProducers`.
    #[serde(default)]
    pub apply_vex: bool,
}

/// Observed state of a policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityArtifactPolicyStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the rule is valid and in use by the webhook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// For operator-managed rules: the RuleSource this rule came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For operator-managed rules: the source document revision it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
}

/// A rule that the API server would reject, found when a rule arrives by another
/// path (policy files, a portal document).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// No condition and no `blockUnscannedImages`.
    #[error(
        "at least one condition is required: conditions.maxAllowedSeverities, conditions.forbiddenCves, conditions.allowedRegistries or findings.blockUnscannedImages"
    )]
    NoCondition,
    /// `maxAllowedSeverities` with no level set.
    #[error("conditions.maxAllowedSeverities: set at least one of critical, high, medium, low")]
    EmptySeverityLimits,
    /// A Label matcher or exemption without a key, or a key elsewhere.
    #[error("{field}: {message}")]
    LabelKey {
        /// Path of the offending entry.
        field: String,
        /// What is wrong.
        message: &'static str,
    },
    /// A scope matcher with no values.
    #[error("scope[{0}].values: at least one value is required")]
    EmptyMatcher(usize),
    /// An empty ID or value.
    #[error("{0}: must not be empty")]
    Empty(String),
    /// `maximumAge` is not a number and a unit.
    #[error("findings.maximumAge: {0:?} is not a duration such as 365d, 12h or 90m")]
    MaximumAge(String),
    /// `applyVex` without `trustedProducers`.
    #[error(
        "findings.applyVex requires trustedProducers: unsigned VEX would let anyone who can push to the registry suppress vulnerabilities"
    )]
    VexWithoutProducers,
}

impl SecurityArtifactPolicySpec {
    /// Checks what the CRD schema and its CEL rules check, for rules that do not
    /// pass through the API server.
    pub fn validate(&self) -> Result<(), SpecError> {
        let c = &self.conditions;
        if c.max_allowed_severities.is_none()
            && c.forbidden_cves.is_empty()
            && c.allowed_registries.is_empty()
            && !self.findings.block_unscanned_images
        {
            return Err(SpecError::NoCondition);
        }
        if c.max_allowed_severities == Some(SeverityLimits::default()) {
            return Err(SpecError::EmptySeverityLimits);
        }
        for (i, m) in self.scope.iter().enumerate() {
            check_label_key(
                format!("scope[{i}]"),
                m.matcher_type == MatcherType::Label,
                m.key.as_deref(),
            )?;
            if m.values.is_empty() {
                return Err(SpecError::EmptyMatcher(i));
            }
        }
        for (i, e) in self.exemptions.iter().enumerate() {
            check_label_key(
                format!("exemptions[{i}]"),
                e.exemption_type == ExemptionType::Label,
                e.key.as_deref(),
            )?;
            if e.value.is_empty() {
                return Err(SpecError::Empty(format!("exemptions[{i}].value")));
            }
        }
        for (i, cve) in self.ignored_cves.iter().enumerate() {
            if cve.id.is_empty() {
                return Err(SpecError::Empty(format!("ignoredCves[{i}].id")));
            }
        }
        if let Some(age) = &self.findings.maximum_age {
            parse_age(age)?;
        }
        for (i, name) in self.findings.trusted_producers.iter().enumerate() {
            if name.is_empty() {
                return Err(SpecError::Empty(format!("findings.trustedProducers[{i}]")));
            }
        }
        if self.findings.apply_vex && self.findings.trusted_producers.is_empty() {
            return Err(SpecError::VexWithoutProducers);
        }
        Ok(())
    }
}

fn check_label_key(field: String, is_label: bool, key: Option<&str>) -> Result<(), SpecError> {
    match (is_label, key) {
        (true, None) | (true, Some("")) => Err(SpecError::LabelKey {
            field,
            message: "a Label entry needs a key",
        }),
        (false, Some(_)) => Err(SpecError::LabelKey {
            field,
            message: "key is only meaningful for a Label entry",
        }),
        _ => Ok(()),
    }
}

/// Parses a `maximumAge` such as `365d` or `1d12h` (the CRD pattern
/// `^([0-9]{1,6}(d|h|m|s))+$`).
pub fn parse_age(text: &str) -> Result<std::time::Duration, SpecError> {
    let bad = || SpecError::MaximumAge(text.to_owned());
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            if digits.len() >= 6 {
                return Err(bad());
            }
            digits.push(ch);
            continue;
        }
        let unit: u64 = match ch {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if text.is_empty() || !digits.is_empty() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}
