//! Rules compiled for evaluation: patterns built once, dates and ages parsed,
//! CVE lists sorted for lookup.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use portcullis_crds::policy::{
    ExemptionType, MatchOperator, MatcherType, PolicyAction, SecurityArtifactPolicySpec,
    SeverityLimits, SpecError, parse_age,
};
use wildmatch::WildMatch;

use super::Subject;

/// A rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {source}")]
pub struct RuleError {
    /// Name of the rule.
    pub rule: String,
    /// What is wrong with it.
    #[source]
    pub source: SpecError,
}

/// One value test: an operator over alternatives.
#[derive(Debug, Clone)]
pub(super) struct ValueMatcher {
    operator: MatchOperator,
    values: Vec<String>,
    globs: Vec<WildMatch>,
}

impl ValueMatcher {
    fn new(operator: MatchOperator, values: &[String], canonical: fn(&str) -> String) -> Self {
        let values: Vec<String> = values.iter().map(|v| canonical(v)).collect();
        let globs = if operator == MatchOperator::Glob {
            values.iter().map(|v| WildMatch::new(v)).collect()
        } else {
            Vec::new()
        };
        ValueMatcher {
            operator,
            values,
            globs,
        }
    }

    /// Whether `value` (absent when the subject has no such attribute) matches.
    /// `NotEquals` holds when the value equals none of the alternatives.
    pub(super) fn matches(&self, value: Option<&str>) -> bool {
        let Some(v) = value else {
            return self.operator == MatchOperator::NotEquals;
        };
        match self.operator {
            MatchOperator::Equals => self.values.iter().any(|x| x == v),
            MatchOperator::NotEquals => self.values.iter().all(|x| x != v),
            MatchOperator::StartsWith => self.values.iter().any(|x| v.starts_with(x.as_str())),
            MatchOperator::EndsWith => self.values.iter().any(|x| v.ends_with(x.as_str())),
            MatchOperator::Contains => self.values.iter().any(|x| v.contains(x.as_str())),
            MatchOperator::Glob => self.globs.iter().any(|g| g.matches(v)),
        }
    }
}

/// Docker Hub has several names; rules and references use `docker.io`.
pub(super) fn canonical_registry(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        other => other.to_owned(),
    }
}

fn verbatim(value: &str) -> String {
    value.to_owned()
}

/// Which subject attribute a matcher or exemption reads.
#[derive(Debug, Clone)]
pub(super) enum Attribute {
    Namespace,
    Pod,
    Workload,
    Kind,
    Label(String),
    Container,
    Image,
    Registry,
    Repository,
    ImageDigest,
}

impl Attribute {
    fn read<'s>(&self, s: &'s Subject<'_>) -> Option<&'s str> {
        match self {
            Attribute::Namespace => Some(s.namespace),
            Attribute::Pod => s.pod_name,
            Attribute::Workload => s.workload,
            Attribute::Kind => Some(s.kind),
            Attribute::Label(key) => s.labels.get(key).map(String::as_str),
            Attribute::Container => Some(s.container),
            Attribute::Image => Some(s.image.as_str()),
            Attribute::Registry => Some(s.image.registry()),
            Attribute::Repository => Some(s.image.name()),
            Attribute::ImageDigest => s.digest.or_else(|| s.image.digest()),
        }
    }

    fn canonicaliser(&self) -> fn(&str) -> String {
        match self {
            Attribute::Registry => canonical_registry,
            _ => verbatim,
        }
    }
}

/// Something that is active until the end of a UTC day.
#[derive(Debug, Clone)]
pub(super) struct Expiring<T> {
    pub(super) item: T,
    pub(super) expires: Option<Date>,
}

impl<T> Expiring<T> {
    /// Active through the whole of its `expires` day (UTC), gone from the next.
    pub(super) fn active(&self, today: Date) -> bool {
        self.expires.is_none_or(|last| today <= last)
    }
}

/// A rule ready for evaluation.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub(super) name: Arc<str>,
    pub(super) action: PolicyAction,
    pub(super) priority: i32,
    pub(super) enabled: bool,
    pub(super) scope: Vec<(Attribute, ValueMatcher)>,
    pub(super) exemptions: Vec<Expiring<(Attribute, ValueMatcher)>>,
    /// Sorted by ID.
    pub(super) ignored: Vec<Expiring<Arc<str>>>,
    pub(super) limits: Option<SeverityLimits>,
    /// Sorted, de-duplicated.
    pub(super) forbidden: Vec<Arc<str>>,
    pub(super) allowed_registries: Option<ValueMatcher>,
    pub(super) allowed_registries_text: String,
    pub(super) fixable_only: bool,
    pub(super) maximum_age: Option<(Duration, String)>,
    pub(super) block_unscanned: bool,
    pub(super) unsupported_registries: Option<ValueMatcher>,
    /// Total order for rules with equal name, priority and action (see `PolicySet`).
    pub(super) fingerprint: String,
}

impl CompiledRule {
    /// Validates and compiles a rule.
    pub fn compile(
        name: &str,
        spec: &SecurityArtifactPolicySpec,
    ) -> Result<CompiledRule, RuleError> {
        spec.validate().map_err(|source| RuleError {
            rule: name.to_owned(),
            source,
        })?;
        let maximum_age = match &spec.findings.maximum_age {
            Some(text) => Some((
                parse_age(text).map_err(|source| RuleError {
                    rule: name.to_owned(),
                    source,
                })?,
                text.clone(),
            )),
            None => None,
        };
        let scope = spec
            .scope
            .iter()
            .map(|m| {
                let attribute = match m.matcher_type {
                    MatcherType::Namespace => Attribute::Namespace,
                    MatcherType::Pod => Attribute::Pod,
                    MatcherType::Workload => Attribute::Workload,
                    MatcherType::Kind => Attribute::Kind,
                    MatcherType::Label => Attribute::Label(m.key.clone().unwrap_or_default()),
                    MatcherType::Container => Attribute::Container,
                    MatcherType::Image => Attribute::Image,
                    MatcherType::Registry => Attribute::Registry,
                    MatcherType::Repository => Attribute::Repository,
                };
                let matcher = ValueMatcher::new(m.operator, &m.values, attribute.canonicaliser());
                (attribute, matcher)
            })
            .collect();
        let exemptions = spec
            .exemptions
            .iter()
            .map(|e| {
                let attribute = match e.exemption_type {
                    ExemptionType::Registry => Attribute::Registry,
                    ExemptionType::Repository => Attribute::Repository,
                    ExemptionType::ImageDigest => Attribute::ImageDigest,
                    ExemptionType::Namespace => Attribute::Namespace,
                    ExemptionType::Workload => Attribute::Workload,
                    ExemptionType::Pod => Attribute::Pod,
                    ExemptionType::Label => Attribute::Label(e.key.clone().unwrap_or_default()),
                };
                let matcher = ValueMatcher::new(
                    e.operator,
                    std::slice::from_ref(&e.value),
                    attribute.canonicaliser(),
                );
                Expiring {
                    item: (attribute, matcher),
                    expires: e.expires,
                }
            })
            .collect();
        let mut ignored: Vec<Expiring<Arc<str>>> = spec
            .ignored_cves
            .iter()
            .map(|c| Expiring {
                item: Arc::from(c.id.trim()),
                expires: c.expires,
            })
            .collect();
        ignored.sort_by(|a, b| a.item.cmp(&b.item).then(b.expires.cmp(&a.expires)));
        let mut forbidden: Vec<Arc<str>> = spec
            .conditions
            .forbidden_cves
            .iter()
            .map(|c| Arc::from(c.trim()))
            .collect();
        forbidden.sort();
        forbidden.dedup();
        let registries = |list: &[String]| {
            (!list.is_empty())
                .then(|| ValueMatcher::new(MatchOperator::Glob, list, canonical_registry))
        };
        Ok(CompiledRule {
            name: Arc::from(name),
            action: spec.action,
            priority: spec.priority,
            enabled: spec.enabled,
            scope,
            exemptions,
            ignored,
            limits: spec.conditions.max_allowed_severities,
            forbidden,
            allowed_registries: registries(&spec.conditions.allowed_registries),
            allowed_registries_text: spec.conditions.allowed_registries.join(", "),
            fixable_only: spec.conditions.fixable_only,
            maximum_age,
            block_unscanned: spec.findings.block_unscanned_images,
            unsupported_registries: registries(&spec.findings.unsupported_registries),
            fingerprint: serde_json::to_string(spec).unwrap_or_default(),
        })
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this rule takes part in the decision for `subject` on `today`:
    /// enabled, in scope, not exempt, registry supported.
    pub(super) fn applies_to(&self, subject: &Subject<'_>, today: Date) -> bool {
        self.enabled
            && self
                .scope
                .iter()
                .all(|(attr, m)| m.matches(attr.read(subject)))
            && !self
                .exemptions
                .iter()
                .any(|e| e.active(today) && e.item.1.matches(e.item.0.read(subject)))
            && !self
                .unsupported_registries
                .as_ref()
                .is_some_and(|m| m.matches(Some(subject.image.registry())))
    }

    /// Whether `id` is ignored by this rule on `today`.
    pub(super) fn ignores(&self, id: &str, today: Date) -> bool {
        let start = self.ignored.partition_point(|e| &*e.item < id);
        self.ignored[start..]
            .iter()
            .take_while(|e| &*e.item == id)
            .any(|e| e.active(today))
    }
}
