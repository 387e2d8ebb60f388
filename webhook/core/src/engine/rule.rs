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
use super::intern::Pinned;
use crate::pattern::{HostGlob, HostGlobs, ImagePart, ImagePattern, PathMode, PatternError};
use crate::reference::{ImageRef, RegistryHost};

/// A rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {problem}")]
pub struct RuleError {
    /// Name of the rule.
    pub rule: String,
    /// What is wrong with it.
    #[source]
    pub problem: RuleProblem,
}

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    /// What the CRD schema or its CEL rules would refuse.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A registry, repository or image pattern that cannot be used.
    #[error("{field}: {error}")]
    Pattern {
        /// Path of the offending value, e.g. `scope[0].values[1]`.
        field: String,
        /// Why.
        error: PatternError,
    },
}

/// What a matcher's operator does with an attribute that carries a registry.
fn registry_operator_error(field: &str, operator: MatchOperator, hint: &str) -> RuleProblem {
    RuleProblem::Pattern {
        field: field.to_owned(),
        error: PatternError {
            pattern: format!("{operator:?}"),
            reason: format!(
                "this operator would let a look-alike host match ({hint}); registry patterns are host-glob[:port], use Glob or Equals"
            ),
        },
    }
}

/// A `Glob` value over plain text, compiled: `*` matches everything and a
/// value without wildcards is compared as it is.
#[derive(Debug, Clone)]
enum TextGlob {
    Any,
    Literal(String),
    Pattern(WildMatch),
}

impl TextGlob {
    fn new(value: &str) -> Self {
        if value == "*" {
            TextGlob::Any
        } else if value.contains(['*', '?']) {
            TextGlob::Pattern(WildMatch::new(value))
        } else {
            TextGlob::Literal(value.to_owned())
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            TextGlob::Any => true,
            TextGlob::Literal(l) => l == text,
            TextGlob::Pattern(p) => p.matches(text),
        }
    }
}

/// One value test over an attribute, compiled for that attribute's syntax.
#[derive(Debug, Clone)]
enum Test {
    /// Plain text (namespace, names, labels, kind, container, digest).
    Text {
        operator: MatchOperator,
        values: Vec<String>,
        globs: Vec<TextGlob>,
    },
    /// The image's registry: host globs, or `.domain` suffixes (`EndsWith`).
    Registry {
        globs: Vec<HostGlob>,
        suffixes: Vec<String>,
    },
    /// The image's repository or whole reference: `host/path` patterns, or
    /// `/path` fragments (`EndsWith`, `Contains`) that never reach the host.
    Image {
        part: ImagePart,
        patterns: Vec<ImagePattern>,
        suffixes: Vec<String>,
        fragments: Vec<String>,
    },
}

/// One value test: an operator over alternatives. `NotEquals` holds when the
/// value equals none of them.
#[derive(Debug, Clone)]
pub(super) struct ValueMatcher {
    test: Test,
    negate: bool,
}

/// What a matcher says about a subject: the image-dependent ones cannot say
/// anything about an image whose reference did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Match,
    NoMatch,
    Unknown,
}

impl ValueMatcher {
    fn new(
        attribute: &Attribute,
        operator: MatchOperator,
        values: &[String],
        field: &str,
    ) -> Result<Self, RuleProblem> {
        let negate = operator == MatchOperator::NotEquals;
        let pattern_error = |i: usize, error| RuleProblem::Pattern {
            field: format!("{field}[{i}]"),
            error,
        };
        let test = match attribute {
            Attribute::Registry => {
                let mut globs = Vec::new();
                let mut suffixes = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    match operator {
                        MatchOperator::Glob | MatchOperator::Equals | MatchOperator::NotEquals => {
                            globs.push(
                                HostGlob::parse(v, operator == MatchOperator::Glob)
                                    .map_err(|e| pattern_error(i, e))?,
                            );
                        }
                        MatchOperator::EndsWith if v.starts_with('.') && v.len() > 1 => {
                            suffixes.push(v.to_ascii_lowercase());
                        }
                        MatchOperator::EndsWith => {
                            return Err(registry_operator_error(
                                field,
                                operator,
                                "an EndsWith registry value starts with '.', e.g. .azurecr.io",
                            ));
                        }
                        MatchOperator::StartsWith | MatchOperator::Contains => {
                            return Err(registry_operator_error(
                                field,
                                operator,
                                "mcr.microsoft.com would match mcr.microsoft.com.evil.net",
                            ));
                        }
                    }
                }
                Test::Registry { globs, suffixes }
            }
            Attribute::Repository | Attribute::Image => {
                let part = if matches!(attribute, Attribute::Repository) {
                    ImagePart::Repository
                } else {
                    ImagePart::Reference
                };
                let mut patterns = Vec::new();
                let mut suffixes = Vec::new();
                let mut fragments = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    let mode = match operator {
                        MatchOperator::Glob => PathMode::Glob,
                        MatchOperator::Equals | MatchOperator::NotEquals => PathMode::Exact,
                        MatchOperator::StartsWith => PathMode::Prefix,
                        MatchOperator::EndsWith | MatchOperator::Contains => {
                            if !v.starts_with('/') {
                                return Err(registry_operator_error(
                                    field,
                                    operator,
                                    "EndsWith and Contains take a path fragment starting with '/', e.g. /nginx",
                                ));
                            }
                            if operator == MatchOperator::EndsWith {
                                suffixes.push(v.clone());
                            } else {
                                fragments.push(v.clone());
                            }
                            continue;
                        }
                    };
                    patterns
                        .push(ImagePattern::parse(v, part, mode).map_err(|e| pattern_error(i, e))?);
                }
                Test::Image {
                    part,
                    patterns,
                    suffixes,
                    fragments,
                }
            }
            _ => Test::Text {
                operator,
                values: values.to_vec(),
                globs: if operator == MatchOperator::Glob {
                    values.iter().map(|v| TextGlob::new(v)).collect()
                } else {
                    Vec::new()
                },
            },
        };
        Ok(ValueMatcher { test, negate })
    }

    /// True when every text matches (a `*` glob, not negated).
    fn matches_every_text(&self) -> bool {
        !self.negate
            && matches!(&self.test, Test::Text { operator: MatchOperator::Glob, globs, .. }
                if globs.iter().any(|g| matches!(g, TextGlob::Any)))
    }

    /// The only texts this matcher accepts, when it names them literally
    /// (`Equals`, or `Glob` values without wildcards): what rules are indexed by.
    fn literals(&self) -> Option<Vec<&str>> {
        if self.negate {
            return None;
        }
        match &self.test {
            Test::Text {
                operator: MatchOperator::Equals,
                values,
                ..
            } => Some(values.iter().map(String::as_str).collect()),
            Test::Text {
                operator: MatchOperator::Glob,
                globs,
                ..
            } => globs
                .iter()
                .map(|g| match g {
                    TextGlob::Literal(l) => Some(l.as_str()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// The only registry hosts (without port) this matcher accepts, when its
    /// patterns are literal hosts.
    fn literal_hosts(&self) -> Option<Vec<String>> {
        if self.negate {
            return None;
        }
        let Test::Registry { globs, suffixes } = &self.test else {
            return None;
        };
        if !suffixes.is_empty() {
            return None;
        }
        globs
            .iter()
            .map(|g| {
                let text = g.as_str();
                if text.contains(['*', '?']) {
                    return None;
                }
                RegistryHost::parse(text).ok().map(|h| h.host().to_owned())
            })
            .collect()
    }

    /// Whether the subject's attribute matches.
    pub(super) fn verdict(&self, attribute: &Attribute, subject: &Subject<'_>) -> Verdict {
        let hit = match (&self.test, attribute.read(subject)) {
            (_, Value::Unknown) => return Verdict::Unknown,
            (_, Value::Absent) => false,
            (
                Test::Text {
                    operator,
                    values,
                    globs,
                },
                Value::Text(v),
            ) => match operator {
                MatchOperator::Equals | MatchOperator::NotEquals => values.iter().any(|x| x == v),
                MatchOperator::StartsWith => values.iter().any(|x| v.starts_with(x.as_str())),
                MatchOperator::EndsWith => values.iter().any(|x| v.ends_with(x.as_str())),
                MatchOperator::Contains => values.iter().any(|x| v.contains(x.as_str())),
                MatchOperator::Glob => globs.iter().any(|g| g.matches(v)),
            },
            (Test::Registry { globs, suffixes }, Value::Image(image)) => {
                let registry = image.registry_host();
                globs.iter().any(|g| g.matches(registry))
                    || (registry.port().is_none()
                        && suffixes
                            .iter()
                            .any(|s| registry.host().ends_with(s.as_str())))
            }
            (
                Test::Image {
                    part,
                    patterns,
                    suffixes,
                    fragments,
                },
                Value::Image(image),
            ) => {
                let path = part.of(image);
                let slashed = || format!("/{path}");
                patterns.iter().any(|p| p.matches(image))
                    || (!suffixes.is_empty()
                        && suffixes.iter().any(|s| slashed().ends_with(s.as_str())))
                    || (!fragments.is_empty()
                        && fragments.iter().any(|s| slashed().contains(s.as_str())))
            }
            // A registry attribute never reads as text, nor text as an image.
            _ => false,
        };
        if hit != self.negate {
            Verdict::Match
        } else {
            Verdict::NoMatch
        }
    }
}

/// An attribute's value for one subject.
enum Value<'s> {
    Text(&'s str),
    Image(&'s ImageRef),
    /// The subject has no such attribute (no pod name, no such label).
    Absent,
    /// The image reference did not parse: image attributes are unknown.
    Unknown,
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
    fn read<'s>(&self, s: &'s Subject<'_>) -> Value<'s> {
        let text = |v: Option<&'s str>| v.map_or(Value::Absent, Value::Text);
        match self {
            Attribute::Namespace => Value::Text(s.namespace),
            Attribute::Pod => text(s.pod_name),
            Attribute::Workload => text(s.workload),
            Attribute::Kind => Value::Text(s.kind),
            Attribute::Label(key) => text(s.labels.get(key).map(String::as_str)),
            Attribute::Container => s.container.map_or(Value::Unknown, Value::Text),
            Attribute::Image | Attribute::Registry | Attribute::Repository => {
                s.image.map_or(Value::Unknown, Value::Image)
            }
            Attribute::ImageDigest => match s.image {
                None => Value::Unknown,
                Some(image) => text(s.digest.or_else(|| image.digest())),
            },
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
    /// Sorted by ID; one ID may appear with several expiry dates.
    pub(super) ignored: Vec<Expiring<Pinned>>,
    pub(super) limits: Option<SeverityLimits>,
    /// Sorted, de-duplicated.
    pub(super) forbidden: Vec<Pinned>,
    pub(super) allowed_registries: Option<HostGlobs>,
    pub(super) allowed_registries_text: String,
    pub(super) fixable_only: bool,
    pub(super) maximum_age: Option<(Duration, String)>,
    pub(super) block_unscanned: bool,
    pub(super) unsupported_registries: Option<HostGlobs>,
    /// Sorted: only artifacts verified for one of these are evidence.
    pub(super) trusted_producers: Vec<Arc<str>>,
    /// VEX verified for a trusted producer suppresses findings.
    pub(super) apply_vex: bool,
    /// Total order for rules with equal name, priority and action (see `PolicySet`).
    pub(super) fingerprint: String,
    /// For a rule that does not compile: why. It then violates on every image
    /// in its scope (the whole cluster if its scope does not compile either).
    pub(super) broken: Option<String>,
}

impl CompiledRule {
    /// Validates and compiles a rule.
    pub fn compile(
        name: &str,
        spec: &SecurityArtifactPolicySpec,
    ) -> Result<CompiledRule, RuleError> {
        Self::compile_inner(spec)
            .map_err(|problem| RuleError {
                rule: name.to_owned(),
                problem,
            })
            .map(|mut r| {
                r.name = Arc::from(name);
                r
            })
    }

    fn compile_inner(spec: &SecurityArtifactPolicySpec) -> Result<CompiledRule, RuleProblem> {
        spec.validate()?;
        let maximum_age = match &spec.findings.maximum_age {
            Some(text) => Some((parse_age(text)?, text.clone())),
            None => None,
        };
        let scope = compile_scope(spec)?;
        let exemptions = spec
            .exemptions
            .iter()
            .enumerate()
            .map(|(i, e)| {
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
                    &attribute,
                    e.operator,
                    std::slice::from_ref(&e.value),
                    &format!("exemptions[{i}].value"),
                )?;
                Ok(Expiring {
                    item: (attribute, matcher),
                    expires: e.expires,
                })
            })
            .collect::<Result<Vec<_>, RuleProblem>>()?;
        let mut ignored: Vec<Expiring<Pinned>> = spec
            .ignored_cves
            .iter()
            .map(|c| Expiring {
                item: Pinned::new(c.id.trim()),
                expires: c.expires,
            })
            .collect();
        ignored.sort_by(|a, b| a.item.cmp(&b.item).then(b.expires.cmp(&a.expires)));
        let mut forbidden: Vec<Pinned> = spec
            .conditions
            .forbidden_cves
            .iter()
            .map(|c| Pinned::new(c.trim()))
            .collect();
        forbidden.sort();
        forbidden.dedup();
        let registries = |list: &[String], field: &str| -> Result<Option<HostGlobs>, RuleProblem> {
            if list.is_empty() {
                return Ok(None);
            }
            HostGlobs::parse(list)
                .map(Some)
                .map_err(|error| RuleProblem::Pattern {
                    field: field.to_owned(),
                    error,
                })
        };
        Ok(CompiledRule {
            name: Arc::from(""),
            action: spec.action,
            priority: spec.priority,
            enabled: spec.enabled,
            scope,
            exemptions,
            ignored,
            limits: spec.conditions.max_allowed_severities,
            forbidden,
            allowed_registries: registries(
                &spec.conditions.allowed_registries,
                "conditions.allowedRegistries",
            )?,
            allowed_registries_text: spec.conditions.allowed_registries.join(", "),
            fixable_only: spec.conditions.fixable_only,
            maximum_age,
            block_unscanned: spec.findings.block_unscanned_images,
            unsupported_registries: registries(
                &spec.findings.unsupported_registries,
                "findings.unsupportedRegistries",
            )?,
            trusted_producers: {
                let mut p: Vec<Arc<str>> = spec
                    .findings
                    .trusted_producers
                    .iter()
                    .map(|n| Arc::from(n.as_str()))
                    .collect();
                p.sort();
                p.dedup();
                p
            },
            apply_vex: spec.findings.apply_vex,
            fingerprint: serde_json::to_string(spec).unwrap_or_default(),
            broken: None,
        })
    }

    /// A stand-in for a rule that does not compile, so it stays visible and
    /// fails closed instead of vanishing: with `action` it violates on every
    /// image in its scope (whole cluster when the scope itself is what is
    /// broken). Exemptions are not honoured: they may be what is broken.
    pub fn invalid(
        name: &str,
        spec: &SecurityArtifactPolicySpec,
        error: &RuleError,
        action: PolicyAction,
    ) -> CompiledRule {
        let scope = compile_scope(spec).unwrap_or_default();
        CompiledRule {
            name: Arc::from(name),
            action,
            priority: spec.priority,
            enabled: spec.enabled,
            scope,
            exemptions: Vec::new(),
            ignored: Vec::new(),
            limits: None,
            forbidden: Vec::new(),
            allowed_registries: None,
            allowed_registries_text: String::new(),
            fixable_only: false,
            maximum_age: None,
            block_unscanned: false,
            unsupported_registries: None,
            trusted_producers: Vec::new(),
            apply_vex: false,
            fingerprint: serde_json::to_string(spec).unwrap_or_default(),
            broken: Some(error.problem.to_string()),
        }
    }

    /// Every registry pattern the rule names (scope, exemptions, allowed
    /// and unsupported registries): candidates for bounded metric labels.
    pub(super) fn host_patterns(&self) -> impl Iterator<Item = &HostGlob> {
        let matchers = self
            .scope
            .iter()
            .map(|(_, m)| m)
            .chain(self.exemptions.iter().map(|e| &e.item.1));
        matchers
            .filter_map(|m| match &m.test {
                Test::Registry { globs, .. } => Some(globs.iter()),
                _ => None,
            })
            .flatten()
            .chain(self.allowed_registries.iter().flat_map(HostGlobs::iter))
            .chain(self.unsupported_registries.iter().flat_map(HostGlobs::iter))
    }

    /// The producers whose verified artifacts this rule reads (empty: any).
    pub fn trusted_producers(&self) -> &[Arc<str>] {
        &self.trusted_producers
    }

    /// Why this rule does not compile, for a stand-in made by [`invalid`](Self::invalid).
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this rule takes part in the decision for `subject` on `today`:
    /// enabled, in scope, not exempt, registry supported. With an unknown
    /// image (a reference that did not parse), image-dependent scope counts as
    /// matching and image-dependent exemptions as not exempting: a name the
    /// gate cannot read must not escape a rule it might fall under.
    pub(super) fn applies_to(&self, subject: &Subject<'_>, today: Date) -> bool {
        self.enabled
            && self
                .scope
                .iter()
                .all(|(attr, m)| m.verdict(attr, subject) != Verdict::NoMatch)
            && !self
                .exemptions
                .iter()
                .any(|e| e.active(today) && e.item.1.verdict(&e.item.0, subject) == Verdict::Match)
            && !match (&self.unsupported_registries, subject.image) {
                (Some(globs), Some(image)) => globs.matches(image.registry_host()),
                _ => false,
            }
    }

    /// Whether `id` is ignored by this rule on `today`.
    pub(super) fn ignores(&self, id: &Pinned, today: Date) -> bool {
        self.ignored
            .iter()
            .any(|e| e.item.handle() == id.handle() && e.active(today))
    }

    /// Whether the ID at `position` of `summary` is ignored on `today`.
    pub(super) fn ignores_at(
        &self,
        summary: &super::ScanSummary,
        position: usize,
        today: Date,
    ) -> bool {
        self.ignored
            .iter()
            .any(|e| e.active(today) && summary.is(position, &e.item))
    }

    /// The IDs ignored on `today`, each once however often it is listed
    /// (entries of one ID are adjacent, the longest-lived first).
    pub(super) fn active_ignored(&self, today: Date) -> impl Iterator<Item = &Pinned> {
        let mut previous: Option<&Pinned> = None;
        self.ignored.iter().filter_map(move |e| {
            if previous.is_some_and(|p| p.handle() == e.item.handle()) {
                return None;
            }
            previous = Some(&e.item);
            self.ignores(&e.item, today).then_some(&e.item)
        })
    }

    /// What the rule's scope is indexed by in a [`PolicySet`](super::PolicySet).
    pub(super) fn scope_key(&self) -> ScopeKey<'_> {
        for (attribute, m) in &self.scope {
            if matches!(attribute, Attribute::Namespace)
                && let Some(values) = m.literals()
            {
                return ScopeKey::Namespaces(values);
            }
        }
        for (attribute, m) in &self.scope {
            if matches!(attribute, Attribute::Registry)
                && let Some(hosts) = m.literal_hosts()
            {
                return ScopeKey::Hosts(hosts);
            }
        }
        ScopeKey::Any
    }
}

/// What a rule's scope requires, as far as an index can tell: a namespace
/// among these, a registry host among these, or nothing it can use.
pub(super) enum ScopeKey<'a> {
    Namespaces(Vec<&'a str>),
    Hosts(Vec<String>),
    Any,
}

/// The scope matchers of a rule, in order (matchers are ANDed).
fn compile_scope(
    spec: &SecurityArtifactPolicySpec,
) -> Result<Vec<(Attribute, ValueMatcher)>, RuleProblem> {
    spec.scope
        .iter()
        .enumerate()
        .map(|(i, m)| {
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
            let matcher = ValueMatcher::new(
                &attribute,
                m.operator,
                &m.values,
                &format!("scope[{i}].values"),
            )?;
            Ok((attribute, matcher))
        })
        // `Namespace: ['*']` (and `Kind`), the usual "everywhere", holds for
        // every subject: evaluating it per rule and container was a tenth of
        // the engine's time.
        .filter(|compiled| {
            !matches!(compiled, Ok((Attribute::Namespace | Attribute::Kind, m)) if m.matches_every_text())
        })
        .collect()
}
