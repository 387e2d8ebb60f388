//! The gating engine: pure and synchronous. It takes compiled rules, what is
//! known about one container's image, and the current time, and returns a
//! decision with its reasons (DESIGN §3 steps 4–6). No I/O, no clock reads.
//!
//! Semantics:
//! - Applicable rules are the enabled ones whose scope matches, that are not
//!   exempt (exemptions end at the end of their UTC day) and whose
//!   `unsupportedRegistries` do not name the image's registry.
//! - Each applicable rule is walked from its image-level condition
//!   (`allowedRegistries`), through missing findings (`blockUnscannedImages`),
//!   then severities Critical → Low (→ Negligible/Unknown for `forbiddenCves`);
//!   its first fulfilled condition is its violation.
//! - The image's action is the strictest action of all violated rules: any
//!   violated `Deny` rule denies. The violation reported first is the most
//!   severe one, from the strongest priority (Deny before Audit at equal
//!   priority), then by name.
//!
//!   DESIGN §3.4 reads "the first fulfilled condition decides" across rules. Taken
//!   literally, a weak Audit rule violated at Critical would override a Deny rule
//!   violated at High, so an image with *more* vulnerabilities would be admitted
//!   where one with fewer is denied. Portcullis keeps the walk and the priority
//!   order for what is reported and lets any violated Deny rule deny, which keeps
//!   the guarantees users rely on: more findings never loosen a decision, and an
//!   exemption never tightens one.
//! - Failure classes apply their configured action, but only when some rule
//!   applies to the image: an image no rule covers needs no findings.

mod decision;
mod evidence;
mod rule;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

pub use decision::{
    Action, AdmissionDecision, AnswerOptions, ContainerDecision, Decision, MAX_LISTED_CVES,
    ReasonCode, Stage, Violation, aggregate, aggregate_with, limits, truncate,
};
pub use evidence::{Artifact, ArtifactSet, Evidence, FailureClass, GateFinding, ScanSummary};
pub use rule::{CompiledRule, RuleError, RuleProblem};

use crate::reference::ImageRef;
use crate::severity::Severity;
use evidence::Counts;

/// The container being judged and its context.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Namespace of the admitted object.
    pub namespace: &'a str,
    /// Kind of the admitted object (`Pod`, `Deployment`, ...).
    pub kind: &'a str,
    /// Name of the owning workload, or of the object itself when it is one.
    pub workload: Option<&'a str>,
    /// Name of the pod (for templates: the name the webhook assigns, if any).
    pub pod_name: Option<&'a str>,
    /// Labels of the pod or pod template.
    pub labels: &'a BTreeMap<String, String>,
    /// Container name (`volume:<name>` for an image volume); `None` when a
    /// decision covers the whole object (too many images to judge).
    pub container: Option<&'a str>,
    /// The normalised image reference; `None` when it did not parse (rules
    /// whose scope depends on the image are then assumed to apply).
    pub image: Option<&'a ImageRef>,
    /// The resolved manifest digest, when known.
    pub digest: Option<&'a str>,
}

/// Action configured for each failure class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureActions([Action; FailureClass::ALL.len()]);

impl Default for FailureActions {
    /// Missing or stale findings are left to the rules' `blockUnscannedImages`;
    /// registry trouble is admitted but audited, so it is seen; references that
    /// cannot be pulled anyway, forbidden destinations and requests too big to
    /// judge are denied.
    fn default() -> Self {
        let mut actions = [Action::Audit; FailureClass::ALL.len()];
        for (class, action) in [
            (FailureClass::NoFindings, Action::Allow),
            (FailureClass::StaleFindings, Action::Allow),
            (FailureClass::InvalidReference, Action::Deny),
            (FailureClass::BlockedDestination, Action::Deny),
            (FailureClass::LimitExceeded, Action::Deny),
        ] {
            actions[class as usize] = action;
        }
        FailureActions(actions)
    }
}

impl FailureActions {
    /// The action for `class`.
    pub fn get(&self, class: FailureClass) -> Action {
        self.0[class as usize]
    }

    /// Sets the action for `class`.
    pub fn set(&mut self, class: FailureClass, action: Action) -> &mut Self {
        self.0[class as usize] = action;
        self
    }
}

/// The rules in force, in a fixed order whatever order they arrived in.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    rules: Vec<CompiledRule>,
    /// The registry patterns the rules name, once each (metric labels).
    registry_patterns: Vec<crate::pattern::HostGlob>,
}

impl PolicySet {
    /// Orders compiled rules: priority, Deny before Audit, name, then content.
    pub fn new(mut rules: Vec<CompiledRule>) -> Self {
        rules.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then(Action::from(b.action).cmp(&Action::from(a.action)))
                .then(a.name.cmp(&b.name))
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        let mut registry_patterns: Vec<crate::pattern::HostGlob> = Vec::new();
        for p in rules.iter().flat_map(CompiledRule::host_patterns) {
            if !registry_patterns.iter().any(|q| q.as_str() == p.as_str()) {
                registry_patterns.push(p.clone());
            }
        }
        PolicySet {
            rules,
            registry_patterns,
        }
    }

    /// The first registry pattern a rule names that matches `registry`: a
    /// metric label bounded by the rules, unlike the host itself.
    pub fn registry_pattern(&self, registry: &crate::reference::RegistryHost) -> Option<&str> {
        self.registry_patterns
            .iter()
            .find(|p| p.matches(registry))
            .map(crate::pattern::HostGlob::as_str)
    }

    /// Compiles and orders rules; the first invalid rule is an error.
    pub fn compile<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a portcullis_crds::SecurityArtifactPolicySpec)>,
    ) -> Result<Self, RuleError> {
        let compiled = rules
            .into_iter()
            .map(|(name, spec)| CompiledRule::compile(name, spec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(compiled))
    }

    /// Compiles and orders rules, keeping invalid ones visible: each becomes
    /// a stand-in ([`CompiledRule::invalid`]) that acts on its whole scope
    /// with `invalid_deny` for a Deny rule (fail closed by default) and Audit
    /// for an Audit rule; `None` leaves invalid rules out. The errors are
    /// returned for logs, metrics and status.
    pub fn compile_lenient<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a portcullis_crds::SecurityArtifactPolicySpec)>,
        invalid_deny: Option<portcullis_crds::PolicyAction>,
    ) -> (Self, Vec<RuleError>) {
        let mut compiled = Vec::new();
        let mut errors = Vec::new();
        for (name, spec) in rules {
            match CompiledRule::compile(name, spec) {
                Ok(rule) => compiled.push(rule),
                Err(e) => {
                    let action = match spec.action {
                        portcullis_crds::PolicyAction::Deny => invalid_deny,
                        portcullis_crds::PolicyAction::Audit => {
                            invalid_deny.map(|_| portcullis_crds::PolicyAction::Audit)
                        }
                    };
                    if let Some(action) = action {
                        compiled.push(CompiledRule::invalid(name, spec, &e, action));
                    }
                    errors.push(e);
                }
            }
        }
        (Self::new(compiled), errors)
    }

    /// The rules, strongest first.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Whether any rule applies to `subject` (without its digest, which only
    /// exempts), i.e. whether its findings are worth fetching at all.
    pub fn any_applies(&self, subject: &Subject<'_>, now: Timestamp) -> bool {
        let today = now.to_zoned(TimeZone::UTC).date();
        self.rules.iter().any(|r| r.applies_to(subject, today))
    }

    /// Judges one container's image on one piece of evidence.
    pub fn evaluate(
        &self,
        subject: &Subject<'_>,
        evidence: Evidence<'_>,
        failures: &FailureActions,
        now: Timestamp,
    ) -> Decision {
        let today = now.to_zoned(TimeZone::UTC).date();
        let mut violations = Vec::new();
        let mut applicable = 0;
        // Each failure class a rule ran into acts once (its configured action).
        let mut missing: Vec<(FailureClass, String)> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.applies_to(subject, today)) {
            applicable += 1;
            let judged = judge_rule(rule, subject, evidence, now, today);
            violations.extend(judged.violation);
            if let Some((class, detail)) = judged.missing
                && !missing.iter().any(|(c, _)| *c == class)
            {
                missing.push((class, detail));
            }
        }
        for (class, detail) in &missing {
            violations.extend(failure_violation(*class, detail, failures));
        }
        decide(violations, applicable)
    }

    /// Judges an image over everything that was looked up for it: a
    /// single-platform image is one target; an index is one target per
    /// platform (plus the index's own artifact), and every one must pass.
    /// The strictest target decides (the first, on a tie); its index is
    /// returned so the answer can name the platform. With no targets the
    /// image is judged as having no findings.
    pub fn evaluate_targets(
        &self,
        subject: &Subject<'_>,
        targets: &[TargetEvidence<'_>],
        failures: &FailureActions,
        now: Timestamp,
    ) -> (Decision, Option<usize>) {
        let mut best: Option<(Decision, usize)> = None;
        for (i, t) in targets.iter().enumerate() {
            let at = Subject {
                digest: Some(t.digest),
                ..*subject
            };
            let decision = self.evaluate(&at, t.evidence, failures, now);
            if best
                .as_ref()
                .is_none_or(|(b, _)| decision.action > b.action)
            {
                best = Some((decision, i));
            }
        }
        match best {
            Some((decision, i)) => (decision, Some(i)),
            None => (
                self.evaluate(
                    subject,
                    Evidence::Failed {
                        class: FailureClass::NoFindings,
                        detail: "",
                    },
                    failures,
                    now,
                ),
                None,
            ),
        }
    }

    /// Judges what could not be identified well enough to look up: an image
    /// reference that does not parse (`InvalidReference`), or an object with
    /// more images than the webhook judges (`LimitExceeded`). Only the
    /// failure class's action can apply, and only if some rule might cover
    /// the subject; scope the subject does not decide (its image, or its
    /// container for a whole-object decision) counts as matching.
    pub fn evaluate_unidentified(
        &self,
        subject: &Subject<'_>,
        class: FailureClass,
        detail: &str,
        failures: &FailureActions,
        now: Timestamp,
    ) -> Decision {
        let today = now.to_zoned(TimeZone::UTC).date();
        let applicable = self
            .rules
            .iter()
            .filter(|r| r.applies_to(subject, today))
            .count();
        let violations = if applicable > 0 {
            failure_violation(class, detail, failures)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        decide(violations, applicable)
    }
}

/// One piece of evidence about one manifest of an image.
#[derive(Debug, Clone, Copy)]
pub struct TargetEvidence<'a> {
    /// The manifest digest judged.
    pub digest: &'a str,
    /// Its findings, or why there are none.
    pub evidence: Evidence<'a>,
}

fn failure_violation(
    class: FailureClass,
    detail: &str,
    failures: &FailureActions,
) -> Option<Violation> {
    let action = failures.get(class);
    if action == Action::Allow {
        return None;
    }
    let message = if detail.is_empty() {
        capitalise(class.describe())
    } else {
        format!("{}: {detail}", capitalise(class.describe()))
    };
    Some(Violation {
        rule: None,
        priority: i32::MAX,
        action,
        reason: ReasonCode::Failure(class),
        stage: Stage::Failure,
        message,
        cves: Vec::new(),
    })
}

fn decide(mut violations: Vec<Violation>, applicable_rules: usize) -> Decision {
    violations.sort_by(|a, b| {
        b.action
            .cmp(&a.action)
            .then(b.stage.cmp(&a.stage))
            .then(a.priority.cmp(&b.priority))
            .then(a.rule.cmp(&b.rule))
    });
    Decision {
        action: violations.first().map_or(Action::Allow, |v| v.action),
        violations,
        applicable_rules,
    }
}

struct Judged {
    violation: Option<Violation>,
    /// The failure class this rule ran into (no, untrusted, stale or
    /// unreadable evidence), whose configured action applies once per image.
    missing: Option<(FailureClass, String)>,
}

/// The evidence one rule reads.
struct Chosen<'a> {
    summary: &'a ScanSummary,
    time: Option<Timestamp>,
    /// Positions in `summary` suppressed by VEX this rule trusts, by producer.
    vex: Vec<(&'a str, &'a [u32])>,
}

/// Which evidence a rule reads: without trusted producers, the newest
/// artifact by the time it claims; with them, the newest artifact verified
/// for one of them, by signed time. A time more than five minutes ahead of
/// `now` makes an artifact unusable, never "fresh".
fn choose<'a>(
    rule: &CompiledRule,
    evidence: Evidence<'a>,
    now: Timestamp,
) -> Result<Chosen<'a>, (FailureClass, String)> {
    let skew = jiff::SignedDuration::from_mins(5);
    let future = |t: Option<Timestamp>| t.is_some_and(|t| t > now + skew);
    let set = match evidence {
        Evidence::Failed { class, detail } => return Err((class, detail.to_owned())),
        Evidence::Scanned(summary) if rule.trusted_producers.is_empty() => {
            if future(summary.scanned_at()) {
                return Err((
                    FailureClass::MalformedFindings,
                    future_detail(summary.scanned_at()),
                ));
            }
            return Ok(Chosen {
                summary,
                time: summary.scanned_at(),
                vex: Vec::new(),
            });
        }
        Evidence::Scanned(_) => {
            return Err((FailureClass::UntrustedFindings, untrusted_detail(rule)));
        }
        Evidence::Artifacts(set) => set,
    };
    let trusts = |p: &str| {
        rule.trusted_producers
            .binary_search_by(|x| (**x).cmp(p))
            .is_ok()
    };
    let mut best: Option<(&Artifact, Option<Timestamp>)> = None;
    let mut in_future = None;
    for a in &set.artifacts {
        let time = if rule.trusted_producers.is_empty() {
            a.claimed_time
        } else {
            match a
                .verified
                .iter()
                .filter(|(p, _)| trusts(p))
                .map(|(_, t)| *t)
                .max()
            {
                Some(t) => t,
                None => continue,
            }
        };
        if future(time) {
            in_future = Some(time);
            continue;
        }
        // Newest first; undated after dated; the lookup's order breaks ties.
        if best.is_none_or(|(_, t)| time > t) {
            best = Some((a, time));
        }
    }
    let Some((artifact, time)) = best else {
        if let Some(t) = in_future {
            return Err((FailureClass::MalformedFindings, future_detail(t)));
        }
        if rule.trusted_producers.is_empty()
            || (set.artifacts.is_empty() && set.rejected.is_empty())
        {
            return Err((FailureClass::NoFindings, String::new()));
        }
        return Err((FailureClass::UntrustedFindings, untrusted_detail(rule)));
    };
    let vex = if rule.apply_vex {
        artifact
            .vex
            .iter()
            .filter(|(p, _)| trusts(p))
            .map(|(p, positions)| (&**p, &**positions))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Chosen {
        summary: &artifact.summary,
        time,
        vex,
    })
}

fn future_detail(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => format!("the findings claim a scan time in the future ({t})"),
        None => String::new(),
    }
}

fn untrusted_detail(rule: &CompiledRule) -> String {
    format!(
        "none is verified for the trusted producers of rule {} ({})",
        rule.name,
        rule.trusted_producers
            .iter()
            .map(|p| &**p)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn judge_rule(
    rule: &CompiledRule,
    subject: &Subject<'_>,
    evidence: Evidence<'_>,
    now: Timestamp,
    today: Date,
) -> Judged {
    let violation = |reason, stage, message: String, cves: Vec<Arc<str>>| Violation {
        rule: Some(rule.name.clone()),
        priority: rule.priority,
        action: rule.action.into(),
        reason,
        stage,
        message,
        cves,
    };
    let found = |v| Judged {
        violation: Some(v),
        missing: None,
    };

    if let Some(why) = &rule.broken {
        return found(violation(
            ReasonCode::InvalidRule,
            Stage::Registry,
            format!(
                "The rule is invalid and applies its action to every image in its scope until it is fixed: {why}"
            ),
            Vec::new(),
        ));
    }

    if let Some(allowed) = &rule.allowed_registries
        && let Some(image) = subject.image
        && !allowed.matches(image.registry_host())
    {
        let message = format!(
            "Image registry {} is not in the allowed registries: {}",
            image.registry(),
            rule.allowed_registries_text
        );
        return found(violation(
            ReasonCode::RegistryNotAllowed,
            Stage::Registry,
            message,
            Vec::new(),
        ));
    }

    let chosen = match choose(rule, evidence, now) {
        Ok(c) => c,
        Err((class, detail)) => {
            let message = match class {
                FailureClass::NoFindings => Some(
                    "No vulnerability findings are attached to the image; unscanned images are not allowed by policy".to_owned(),
                ),
                FailureClass::UntrustedFindings => Some(format!(
                    "Vulnerability findings are attached, but {detail}; unverified findings are not allowed by policy"
                )),
                _ => None,
            };
            // Missing and untrusted evidence is this rule's to act on when it
            // blocks unscanned images; other failures are the class's action.
            return Judged {
                violation: message.filter(|_| rule.block_unscanned).map(|m| {
                    violation(ReasonCode::Failure(class), Stage::Unscanned, m, Vec::new())
                }),
                missing: Some((class, detail)),
            };
        }
    };
    let summary = chosen.summary;

    if let Some((max_age, text)) = &rule.maximum_age {
        let fresh = chosen
            .time
            .is_some_and(|at| now.duration_since(at).unsigned_abs().le(max_age) || at > now);
        if !fresh {
            let when = chosen
                .time
                .map_or_else(|| "at an unknown time".to_owned(), |t| format!("at {t}"));
            let message = format!(
                "The newest vulnerability findings were produced {when}, older than the maximum age of {text}; stale findings count as missing"
            );
            return Judged {
                violation: rule.block_unscanned.then(|| {
                    violation(
                        ReasonCode::Failure(FailureClass::StaleFindings),
                        Stage::Unscanned,
                        message,
                        Vec::new(),
                    )
                }),
                missing: Some((FailureClass::StaleFindings, String::new())),
            };
        }
    }

    // VEX suppressions this rule trusts (usually none).
    let mut suppressed: Vec<bool> = Vec::new();
    let mut vex_counts: Vec<(&str, usize)> = Vec::new();
    for (producer, positions) in &chosen.vex {
        if suppressed.is_empty() {
            suppressed = vec![false; summary.len()];
        }
        let mut n = 0;
        for &p in positions.iter() {
            if let Some(slot) = suppressed.get_mut(p as usize)
                && !*slot
            {
                *slot = true;
                n += 1;
            }
        }
        vex_counts.push((producer, n));
    }
    let is_suppressed = |i: usize| suppressed.get(i).copied().unwrap_or(false);

    // Counts per level after VEX and this rule's ignored CVEs.
    let mut counts: Counts = summary.counts(rule.fixable_only);
    let mut uncount = |f: &GateFinding| {
        if !rule.fixable_only || f.fixable {
            counts[f.severity as usize] = counts[f.severity as usize].saturating_sub(1);
        }
    };
    for (i, _) in suppressed.iter().enumerate().filter(|(_, s)| **s) {
        if let Some(f) = summary.at(i) {
            uncount(f);
        }
    }
    for id in rule.active_ignored(today) {
        let (start, found) = summary.with_id_at(id);
        for (k, f) in found.iter().enumerate() {
            if !is_suppressed(start + k) {
                uncount(f);
            }
        }
    }
    let vex_note = if vex_counts.iter().any(|(_, n)| *n > 0) {
        format!(
            " ({})",
            vex_counts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(p, n)| format!("VEX from {p} suppressed {n} findings"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        String::new()
    };
    // Forbidden CVEs present (not ignored, not suppressed), with their strongest severity.
    let forbidden: Vec<(Severity, &Arc<str>)> = rule
        .forbidden
        .iter()
        .filter(|id| !rule.ignores(id, today))
        .filter_map(|id| {
            let (start, found) = summary.with_id_at(id);
            found
                .iter()
                .enumerate()
                .find(|(k, _)| !is_suppressed(start + k))
                .map(|(_, f)| (f.severity, id))
        })
        .collect();

    let mut cumulative = 0u32;
    for level in Severity::ALL {
        if level.is_counted() {
            cumulative = cumulative.saturating_add(counts[level as usize]);
            if let Some(limit) = rule.limits.and_then(|l| limit_at(&l, level))
                && cumulative > limit
            {
                let message = format!(
                    "Image contains {cumulative} {}{} CVEs, which is more than the allowed count of: {limit}{vex_note}",
                    if rule.fixable_only { "fixable " } else { "" },
                    level_phrase(level),
                );
                let cves = listed_cves(summary, rule, level, today, &is_suppressed);
                return found(violation(
                    ReasonCode::SeverityThreshold,
                    Stage::Finding(level),
                    message,
                    cves,
                ));
            }
        }
        let mut at_level: Vec<Arc<str>> = forbidden
            .iter()
            .filter(|(s, _)| *s == level)
            .map(|(_, id)| Arc::clone(id))
            .collect();
        if !at_level.is_empty() {
            // Report every forbidden CVE present, strongest first.
            at_level = forbidden.iter().map(|(_, id)| Arc::clone(id)).collect();
            at_level.truncate(MAX_LISTED_CVES);
            let message = format!(
                "Image contains forbidden CVEs: {}{vex_note}",
                at_level.iter().map(|c| &**c).collect::<Vec<_>>().join(", ")
            );
            return found(violation(
                ReasonCode::ForbiddenCve,
                Stage::Finding(level),
                message,
                at_level,
            ));
        }
    }
    Judged {
        violation: None,
        missing: None,
    }
}

fn limit_at(limits: &portcullis_crds::SeverityLimits, level: Severity) -> Option<u32> {
    match level {
        Severity::Critical => limits.critical,
        Severity::High => limits.high,
        Severity::Medium => limits.medium,
        Severity::Low => limits.low,
        Severity::Negligible | Severity::Unknown => None,
    }
}

fn level_phrase(level: Severity) -> String {
    match level {
        Severity::Critical => "critical".to_owned(),
        other => format!("{other} or higher"),
    }
}

/// The first distinct CVEs counted at `level` or above, strongest first.
fn listed_cves(
    summary: &ScanSummary,
    rule: &CompiledRule,
    level: Severity,
    today: Date,
    is_suppressed: &dyn Fn(usize) -> bool,
) -> Vec<Arc<str>> {
    let mut out: Vec<Arc<str>> = Vec::new();
    for (i, f) in summary
        .strongest_first()
        .take_while(|(_, f)| f.severity >= level)
    {
        if out.len() == MAX_LISTED_CVES {
            break;
        }
        if (rule.fixable_only && !f.fixable)
            || is_suppressed(i)
            || out.contains(&f.id)
            || rule.ignores(&f.id, today)
        {
            continue;
        }
        out.push(Arc::clone(&f.id));
    }
    out
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}
