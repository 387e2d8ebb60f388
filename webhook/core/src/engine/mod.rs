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
//!
//! Cost: rules are indexed by what their scope requires (a literal
//! namespace, else a literal registry host), so a container is matched only
//! against rules that can apply to it; `*` matches without a comparison.
//! [`PolicySet::judge`] decides without writing any message (a [`Verdict`]);
//! [`PolicySet::render`] writes a violation out when an answer shows it.

mod decision;
mod evidence;
mod intern;
mod rule;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

pub use decision::{
    Action, AdmissionDecision, AnswerOptions, ContainerDecision, Decision, Hit, Judged,
    MAX_LISTED_CVES, ReasonCode, Stage, Verdict, Violation, aggregate, aggregate_judged,
    aggregate_with, deciding_message, limits, truncate,
};
pub use evidence::{Artifact, ArtifactSet, Evidence, FailureClass, GateFinding, ScanSummary};
pub use intern::{ENTRY_OVERHEAD as INTERNED_ENTRY_OVERHEAD, Interner, InternerStats};
pub use rule::{CompiledRule, RuleError, RuleProblem};

use crate::reference::ImageRef;
use crate::severity::Severity;
use evidence::Counts;
use rule::ScopeKey;

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

/// When an evaluation happens: the time, and its UTC date (exemptions and
/// ignored CVEs expire by day). Compute it once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalTime {
    /// Now.
    pub now: Timestamp,
    /// Today, in UTC.
    pub today: Date,
}

impl EvalTime {
    /// The evaluation time `now`.
    pub fn at(now: Timestamp) -> Self {
        EvalTime {
            now,
            today: now.to_zoned(TimeZone::UTC).date(),
        }
    }
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

/// Rules by what their scope requires, as positions in the rule order.
#[derive(Debug, Clone, Default)]
struct ScopeIndex {
    /// Rules that apply only in one of a few namespaces, by namespace.
    by_namespace: HashMap<Box<str>, Vec<u32>>,
    /// Rules (not in `by_namespace`) that apply only to a few registry
    /// hosts, by host.
    by_host: HashMap<Box<str>, Vec<u32>>,
    /// Every other enabled rule.
    rest: Vec<u32>,
}

impl ScopeIndex {
    fn new(rules: &[CompiledRule]) -> Self {
        let mut index = ScopeIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            if !rule.enabled {
                continue;
            }
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match rule.scope_key() {
                ScopeKey::Namespaces(values) => {
                    for v in values {
                        let list = index.by_namespace.entry(Box::from(v)).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
                ScopeKey::Hosts(hosts) => {
                    for h in hosts {
                        let list = index.by_host.entry(h.into_boxed_str()).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
                ScopeKey::Any => index.rest.push(i),
            }
        }
        index
    }
}

/// The rules that may apply to a subject, in rule order: a merge of the
/// index's lists (or every rule when the image is unknown, since image
/// scope then counts as matching).
enum Candidates<'p> {
    All(std::ops::Range<u32>),
    Merge([&'p [u32]; 3]),
}

impl Iterator for Candidates<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match self {
            Candidates::All(range) => range.next(),
            Candidates::Merge(lists) => {
                let (k, first) = lists
                    .iter()
                    .enumerate()
                    .filter_map(|(k, l)| l.first().map(|f| (k, *f)))
                    .min_by_key(|(_, f)| *f)?;
                lists[k] = &lists[k][1..];
                Some(first)
            }
        }
    }
}

/// The rules in force, in a fixed order whatever order they arrived in.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    rules: Vec<CompiledRule>,
    /// The registry patterns the rules name, once each (metric labels).
    registry_patterns: Vec<crate::pattern::HostGlob>,
    index: ScopeIndex,
}

/// Where a rule's scope is unknown in a subject (no image), rules are
/// matched one by one; the index never hides a rule that may apply.
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
        let index = ScopeIndex::new(&rules);
        PolicySet {
            rules,
            registry_patterns,
            index,
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

    /// The rules that may apply to `subject`, in order (a superset of those
    /// that do: `applies_to` decides).
    fn candidates(&self, subject: &Subject<'_>) -> Candidates<'_> {
        let Some(image) = subject.image else {
            return Candidates::All(0..u32::try_from(self.rules.len()).unwrap_or(u32::MAX));
        };
        let index = &self.index;
        fn get<'m>(map: &'m HashMap<Box<str>, Vec<u32>>, key: &str) -> &'m [u32] {
            map.get(key).map_or(&[][..], Vec::as_slice)
        }
        Candidates::Merge([
            get(&index.by_namespace, subject.namespace),
            get(&index.by_host, image.registry_host().host()),
            index.rest.as_slice(),
        ])
    }

    fn applicable<'s>(
        &'s self,
        subject: &'s Subject<'_>,
        today: Date,
    ) -> impl Iterator<Item = (u32, &'s CompiledRule)> + 's {
        self.candidates(subject).filter_map(move |i| {
            let rule = self.rules.get(i as usize)?;
            rule.applies_to(subject, today).then_some((i, rule))
        })
    }

    /// Whether any rule applies to `subject` (without its digest, which only
    /// exempts), i.e. whether its findings are worth fetching at all.
    pub fn any_applies(&self, subject: &Subject<'_>, now: Timestamp) -> bool {
        self.any_applies_at(subject, &EvalTime::at(now))
    }

    /// [`any_applies`](Self::any_applies) at `at`.
    pub fn any_applies_at(&self, subject: &Subject<'_>, at: &EvalTime) -> bool {
        self.applicable(subject, at.today).next().is_some()
    }

    /// Judges one container's image on one piece of evidence, writing every
    /// violation out.
    pub fn evaluate(
        &self,
        subject: &Subject<'_>,
        evidence: Evidence<'_>,
        failures: &FailureActions,
        now: Timestamp,
    ) -> Decision {
        let at = EvalTime::at(now);
        let verdict = self.judge(subject, evidence, failures, &at);
        self.decision(&verdict, subject, evidence, failures, &at)
    }

    /// Judges one container's image on one piece of evidence without writing
    /// messages; [`render`](Self::render) writes out the violations shown.
    pub fn judge(
        &self,
        subject: &Subject<'_>,
        evidence: Evidence<'_>,
        failures: &FailureActions,
        at: &EvalTime,
    ) -> Verdict {
        let mut hits = Vec::new();
        let mut applicable = 0;
        // Each failure class a rule ran into acts once (its configured
        // action), detailed from the first rule that ran into it.
        let mut missing = [(FailureClass::NoFindings, 0u32); FailureClass::ALL.len()];
        let mut n_missing = 0;
        for (i, rule) in self.applicable(subject, at.today) {
            applicable += 1;
            let judged = judge_rule(rule, subject, evidence, at, None);
            if let Some((reason, stage)) = judged.violation {
                hits.push(Hit {
                    rule: Some(i),
                    source: i,
                    priority: rule.priority,
                    action: rule.action.into(),
                    reason,
                    stage,
                });
            }
            if let Some(class) = judged.missing
                && !missing[..n_missing].iter().any(|(c, _)| *c == class)
            {
                missing[n_missing] = (class, i);
                n_missing += 1;
            }
        }
        for &(class, source) in &missing[..n_missing] {
            let action = failures.get(class);
            if action != Action::Allow {
                hits.push(Hit {
                    rule: None,
                    source,
                    priority: i32::MAX,
                    action,
                    reason: ReasonCode::Failure(class),
                    stage: Stage::Failure,
                });
            }
        }
        self.decide(hits, applicable)
    }

    fn rule_name(&self, hit: &Hit) -> Option<&str> {
        hit.rule
            .and_then(|i| self.rules.get(i as usize))
            .map(|r| &*r.name)
    }

    fn decide(&self, mut hits: Vec<Hit>, applicable_rules: usize) -> Verdict {
        if hits.len() > 1 {
            hits.sort_by(|a, b| {
                b.action
                    .cmp(&a.action)
                    .then(b.stage.cmp(&a.stage))
                    .then(a.priority.cmp(&b.priority))
                    .then_with(|| self.rule_name(a).cmp(&self.rule_name(b)))
            });
        }
        Verdict {
            action: hits.first().map_or(Action::Allow, |v| v.action),
            hits,
            applicable_rules,
        }
    }

    /// Writes out a violation of a verdict from [`judge`](Self::judge),
    /// given the same subject, evidence, failure actions and time.
    pub fn render(
        &self,
        hit: &Hit,
        subject: &Subject<'_>,
        evidence: Evidence<'_>,
        failures: &FailureActions,
        at: &EvalTime,
    ) -> Violation {
        let mut text = Text::default();
        if let Some(rule) = self.rules.get(hit.source as usize) {
            judge_rule(rule, subject, evidence, at, Some(&mut text));
        }
        match (hit.rule, hit.reason) {
            (None, ReasonCode::Failure(class)) => failure_violation(class, &text.detail, failures)
                .unwrap_or_else(|| Violation {
                    rule: None,
                    priority: hit.priority,
                    action: hit.action,
                    reason: hit.reason,
                    stage: hit.stage,
                    message: capitalise(class.describe()),
                    cves: Vec::new(),
                }),
            _ => Violation {
                rule: self.rules.get(hit.source as usize).map(|r| r.name.clone()),
                priority: hit.priority,
                action: hit.action,
                reason: hit.reason,
                stage: hit.stage,
                message: text.message,
                cves: text.cves,
            },
        }
    }

    /// A verdict with every violation written out.
    pub fn decision(
        &self,
        verdict: &Verdict,
        subject: &Subject<'_>,
        evidence: Evidence<'_>,
        failures: &FailureActions,
        at: &EvalTime,
    ) -> Decision {
        Decision {
            action: verdict.action,
            violations: verdict
                .hits
                .iter()
                .map(|h| self.render(h, subject, evidence, failures, at))
                .collect(),
            applicable_rules: verdict.applicable_rules,
        }
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
        let at = EvalTime::at(now);
        let (verdict, which) = self.judge_targets(subject, targets, failures, &at);
        let (subject, evidence) = target_of(subject, targets, which);
        (
            self.decision(&verdict, &subject, evidence, failures, &at),
            which,
        )
    }

    /// [`evaluate_targets`](Self::evaluate_targets) without messages; write
    /// violations out with [`render`](Self::render) on [`target_of`]'s
    /// subject and evidence.
    pub fn judge_targets(
        &self,
        subject: &Subject<'_>,
        targets: &[TargetEvidence<'_>],
        failures: &FailureActions,
        at: &EvalTime,
    ) -> (Verdict, Option<usize>) {
        let mut best: Option<(Verdict, usize)> = None;
        for (i, t) in targets.iter().enumerate() {
            let on = Subject {
                digest: Some(t.digest),
                ..*subject
            };
            let verdict = self.judge(&on, t.evidence, failures, at);
            if best.as_ref().is_none_or(|(b, _)| verdict.action > b.action) {
                best = Some((verdict, i));
            }
        }
        match best {
            Some((verdict, i)) => (verdict, Some(i)),
            None => (self.judge(subject, NO_FINDINGS, failures, at), None),
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
        let applicable = self.applicable(subject, today).count();
        let mut violations = if applicable > 0 {
            failure_violation(class, detail, failures)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        sort_violations(&mut violations);
        Decision {
            action: violations.first().map_or(Action::Allow, |v| v.action),
            violations,
            applicable_rules: applicable,
        }
    }
}

/// The evidence of "nothing was looked up".
const NO_FINDINGS: Evidence<'static> = Evidence::Failed {
    class: FailureClass::NoFindings,
    detail: "",
};

/// The subject (with the target's digest) and evidence a verdict from
/// [`PolicySet::judge_targets`] was reached on.
pub fn target_of<'a>(
    subject: &Subject<'a>,
    targets: &[TargetEvidence<'a>],
    which: Option<usize>,
) -> (Subject<'a>, Evidence<'a>) {
    match which.and_then(|i| targets.get(i)) {
        Some(t) => (
            Subject {
                digest: Some(t.digest),
                ..*subject
            },
            t.evidence,
        ),
        None => (*subject, NO_FINDINGS),
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

fn sort_violations(violations: &mut [Violation]) {
    violations.sort_by(|a, b| {
        b.action
            .cmp(&a.action)
            .then(b.stage.cmp(&a.stage))
            .then(a.priority.cmp(&b.priority))
            .then(a.rule.cmp(&b.rule))
    });
}

/// What one rule found: its violation (reason and stage), and the failure
/// class it ran into (no, untrusted, stale or unreadable evidence), whose
/// configured action applies once per image.
struct RuleOutcome {
    violation: Option<(ReasonCode, Stage)>,
    missing: Option<FailureClass>,
}

/// A rule's violation written out, and the detail of its failure class.
#[derive(Default)]
struct Text {
    message: String,
    cves: Vec<Arc<str>>,
    detail: String,
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
/// `now` makes an artifact unusable, never "fresh". The failure's detail is
/// written only when `render` asks for it.
fn choose<'a>(
    rule: &CompiledRule,
    evidence: Evidence<'a>,
    now: Timestamp,
    render: bool,
) -> Result<Chosen<'a>, (FailureClass, String)> {
    let skew = jiff::SignedDuration::from_mins(5);
    let future = |t: Option<Timestamp>| t.is_some_and(|t| t > now + skew);
    let set = match evidence {
        Evidence::Failed { class, detail } => {
            return Err((
                class,
                if render {
                    detail.to_owned()
                } else {
                    String::new()
                },
            ));
        }
        Evidence::Scanned(summary) if rule.trusted_producers.is_empty() => {
            if future(summary.scanned_at()) {
                return Err((
                    FailureClass::MalformedFindings,
                    if render {
                        future_detail(summary.scanned_at())
                    } else {
                        String::new()
                    },
                ));
            }
            return Ok(Chosen {
                summary,
                time: summary.scanned_at(),
                vex: Vec::new(),
            });
        }
        Evidence::Scanned(_) => {
            return Err((
                FailureClass::UntrustedFindings,
                if render {
                    untrusted_detail(rule)
                } else {
                    String::new()
                },
            ));
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
            return Err((
                FailureClass::MalformedFindings,
                if render {
                    future_detail(t)
                } else {
                    String::new()
                },
            ));
        }
        if rule.trusted_producers.is_empty()
            || (set.artifacts.is_empty() && set.rejected.is_empty())
        {
            return Err((FailureClass::NoFindings, String::new()));
        }
        return Err((
            FailureClass::UntrustedFindings,
            if render {
                untrusted_detail(rule)
            } else {
                String::new()
            },
        ));
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

/// One rule against one subject's evidence. With `text`, the violation's
/// message and CVEs and the failure class's detail are written there;
/// without, nothing is formatted or allocated on the way to the verdict.
fn judge_rule(
    rule: &CompiledRule,
    subject: &Subject<'_>,
    evidence: Evidence<'_>,
    at: &EvalTime,
    mut text: Option<&mut Text>,
) -> RuleOutcome {
    let (now, today) = (at.now, at.today);
    let found = |reason, stage| RuleOutcome {
        violation: Some((reason, stage)),
        missing: None,
    };

    if let Some(why) = &rule.broken {
        if let Some(t) = text {
            t.message = format!(
                "The rule is invalid and applies its action to every image in its scope until it is fixed: {why}"
            );
        }
        return found(ReasonCode::InvalidRule, Stage::Registry);
    }

    if let Some(allowed) = &rule.allowed_registries
        && let Some(image) = subject.image
        && !allowed.matches(image.registry_host())
    {
        if let Some(t) = text {
            t.message = format!(
                "Image registry {} is not in the allowed registries: {}",
                image.registry(),
                rule.allowed_registries_text
            );
        }
        return found(ReasonCode::RegistryNotAllowed, Stage::Registry);
    }

    let chosen = match choose(rule, evidence, now, text.is_some()) {
        Ok(c) => c,
        Err((class, detail)) => {
            // Missing and untrusted evidence is this rule's to act on when it
            // blocks unscanned images; other failures are the class's action.
            let blocks = rule.block_unscanned
                && matches!(
                    class,
                    FailureClass::NoFindings | FailureClass::UntrustedFindings
                );
            if let Some(t) = text {
                if blocks {
                    t.message = match class {
                        FailureClass::NoFindings => "No vulnerability findings are attached to the image; unscanned images are not allowed by policy".to_owned(),
                        _ => format!(
                            "Vulnerability findings are attached, but {detail}; unverified findings are not allowed by policy"
                        ),
                    };
                }
                t.detail = detail;
            }
            return RuleOutcome {
                violation: blocks.then_some((ReasonCode::Failure(class), Stage::Unscanned)),
                missing: Some(class),
            };
        }
    };
    let summary = chosen.summary;

    if let Some((max_age, age_text)) = &rule.maximum_age {
        let fresh = chosen
            .time
            .is_some_and(|at| now.duration_since(at).unsigned_abs().le(max_age) || at > now);
        if !fresh {
            if let Some(t) = text {
                let when = chosen
                    .time
                    .map_or_else(|| "at an unknown time".to_owned(), |t| format!("at {t}"));
                t.message = format!(
                    "The newest vulnerability findings were produced {when}, older than the maximum age of {age_text}; stale findings count as missing"
                );
            }
            return RuleOutcome {
                violation: rule.block_unscanned.then_some((
                    ReasonCode::Failure(FailureClass::StaleFindings),
                    Stage::Unscanned,
                )),
                missing: Some(FailureClass::StaleFindings),
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
    let mut uncount = |p: usize| {
        if !rule.fixable_only || summary.fixable(p) {
            let level = summary.severity(p) as usize;
            counts[level] = counts[level].saturating_sub(1);
        }
    };
    for (i, _) in suppressed.iter().enumerate().filter(|(_, s)| **s) {
        uncount(i);
    }
    for id in rule.active_ignored(today) {
        for p in summary.find(id) {
            if !is_suppressed(p) {
                uncount(p);
            }
        }
    }
    // Levels at which a forbidden CVE is present (not ignored, not
    // suppressed), each at its strongest severity.
    let mut forbidden_levels = 0u8;
    let present = |id: &intern::Pinned| -> Option<Severity> {
        if rule.ignores(id, today) {
            return None;
        }
        summary
            .find(id)
            .find(|p| !is_suppressed(*p))
            .map(|p| summary.severity(p))
    };
    for id in &rule.forbidden {
        if let Some(level) = present(id) {
            forbidden_levels |= 1 << level as u8;
        }
    }
    let vex_note = |counts: &[(&str, usize)]| {
        if counts.iter().any(|(_, n)| *n > 0) {
            format!(
                " ({})",
                counts
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(p, n)| format!("VEX from {p} suppressed {n} findings"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        }
    };

    let mut cumulative = 0u32;
    for level in Severity::ALL {
        if level.is_counted() {
            cumulative = cumulative.saturating_add(counts[level as usize]);
            if let Some(limit) = rule.limits.and_then(|l| limit_at(&l, level))
                && cumulative > limit
            {
                if let Some(t) = text.as_deref_mut() {
                    t.message = format!(
                        "Image contains {cumulative} {}{} CVEs, which is more than the allowed count of: {limit}{}",
                        if rule.fixable_only { "fixable " } else { "" },
                        level_phrase(level),
                        vex_note(&vex_counts),
                    );
                    t.cves = listed_cves(summary, rule, level, today, &is_suppressed);
                }
                return found(ReasonCode::SeverityThreshold, Stage::Finding(level));
            }
        }
        if forbidden_levels & (1 << level as u8) != 0 {
            if let Some(t) = text.as_deref_mut() {
                // Every forbidden CVE present, in the rule's order.
                let ids: Vec<Arc<str>> = rule
                    .forbidden
                    .iter()
                    .filter(|id| present(id).is_some())
                    .take(MAX_LISTED_CVES)
                    .map(|id| id.text().clone())
                    .collect();
                t.message = format!(
                    "Image contains forbidden CVEs: {}{}",
                    ids.iter().map(|c| &**c).collect::<Vec<_>>().join(", "),
                    vex_note(&vex_counts),
                );
                t.cves = ids;
            }
            return found(ReasonCode::ForbiddenCve, Stage::Finding(level));
        }
    }
    RuleOutcome {
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

/// The first distinct CVEs counted at `level` or above, strongest first:
/// from the summary's kept first IDs per level, or, when VEX or ignored
/// CVEs reach past them, from a pass over the findings.
fn listed_cves(
    summary: &ScanSummary,
    rule: &CompiledRule,
    level: Severity,
    today: Date,
    is_suppressed: &dyn Fn(usize) -> bool,
) -> Vec<Arc<str>> {
    let positions = listed_from_kept(summary, rule, level, today, is_suppressed)
        .unwrap_or_else(|| listed_by_pass(summary, rule, level, today, is_suppressed));
    summary.ids(&positions)
}

fn listed_from_kept(
    summary: &ScanSummary,
    rule: &CompiledRule,
    level: Severity,
    today: Date,
    is_suppressed: &dyn Fn(usize) -> bool,
) -> Option<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for l in Severity::ALL.into_iter().take_while(|l| *l >= level) {
        let (kept, more) = summary.first_ids(l, rule.fixable_only)?;
        for p in kept {
            if out.len() == MAX_LISTED_CVES {
                return Some(out);
            }
            // A suppressed finding may hide a later one with the same ID.
            if is_suppressed(p) {
                return None;
            }
            if out.iter().any(|&q| summary.same_id(q, p)) || rule.ignores_at(summary, p, today) {
                continue;
            }
            out.push(p);
        }
        if out.len() == MAX_LISTED_CVES {
            return Some(out);
        }
        if more {
            return None;
        }
    }
    Some(out)
}

fn listed_by_pass(
    summary: &ScanSummary,
    rule: &CompiledRule,
    level: Severity,
    today: Date,
    is_suppressed: &dyn Fn(usize) -> bool,
) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for l in Severity::ALL.into_iter().take_while(|l| *l >= level) {
        for p in (0..summary.len()).filter(|p| summary.severity(*p) == l) {
            if out.len() == MAX_LISTED_CVES {
                return out;
            }
            if (rule.fixable_only && !summary.fixable(p))
                || is_suppressed(p)
                || out.iter().any(|&q| summary.same_id(q, p))
                || rule.ignores_at(summary, p, today)
            {
                continue;
            }
            out.push(p);
        }
    }
    out
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IDS: [&str; 12] = [
        "CVE-2024-0001",
        "CVE-2024-0002",
        "CVE-2024-0003",
        "CVE-2024-0004",
        "CVE-2024-0005",
        "CVE-2024-0006",
        "CVE-2024-0007",
        "CVE-2024-0008",
        "GHSA-aaaa-bbbb-cccc",
        "GHSA-dddd-eeee-ffff",
        "CVE-2023-9999",
        "CVE-2025-0100",
    ];

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap_or_default()
    }

    fn policies(rules: &[String]) -> PolicySet {
        let specs: Vec<(String, portcullis_crds::SecurityArtifactPolicySpec)> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, y)| Some((format!("r{i:02}"), serde_saphyr::from_str(y).ok()?)))
            .collect();
        PolicySet::compile(specs.iter().map(|(n, s)| (n.as_str(), s))).unwrap_or_default()
    }

    fn finding() -> impl Strategy<Value = (usize, Severity, bool)> {
        (
            0..IDS.len(),
            prop::sample::select(Severity::ALL.to_vec()),
            any::<bool>(),
        )
    }

    #[test]
    fn interned_ids_are_freed_with_the_last_summary_that_holds_them() {
        let id = "CVE-1970-424242-interner-test";
        let f = |id: &str| GateFinding {
            id: id.into(),
            severity: Severity::High,
            fixable: true,
        };
        let a = ScanSummary::new([f(id), f(id)], None);
        let handle = Interner::global().lookup(id);
        assert!(handle.is_some());
        let b = a.clone();
        drop(a);
        assert_eq!(
            Interner::global().lookup(id),
            handle,
            "still held by the clone"
        );
        drop(b);
        assert_eq!(
            Interner::global().lookup(id),
            None,
            "pruned with the summaries"
        );
    }

    #[test]
    fn a_full_table_leaves_ids_with_the_summary_and_rules_still_find_them() {
        let full: &'static Interner = Box::leak(Box::default());
        full.set_max_bytes(Some(0));
        let items = vec![
            ("CVE-2024-0002", Severity::Critical, true),
            ("CVE-2024-0001", Severity::High, false),
            ("CVE-2024-0002", Severity::High, true),
        ];
        let (local, positions) = ScanSummary::build_in(full, items.clone(), Some(now()));
        let (global, same) = ScanSummary::build_in(Interner::global(), items, Some(now()));
        assert_eq!(positions, same);
        assert_eq!(full.stats().entries, 0);
        assert_eq!(local, global);
        let set = policies(&[
            "action: Deny\nconditions: {forbiddenCves: [CVE-2024-0002]}".into(),
            "action: Audit\nignoredCves: [{id: CVE-2024-0001}]\nconditions: {maxAllowedSeverities: {high: 1}}".into(),
        ]);
        let labels = BTreeMap::new();
        let subject = Subject {
            namespace: "ns",
            kind: "Pod",
            workload: None,
            pod_name: Some("p"),
            labels: &labels,
            container: Some("c"),
            image: None,
            digest: None,
        };
        let failures = FailureActions::default();
        let judge =
            |s: &ScanSummary| set.evaluate(&subject, Evidence::Scanned(s), &failures, now());
        assert_eq!(judge(&local), judge(&global));
        assert_eq!(judge(&local).reason(), ReasonCode::ForbiddenCve);
    }

    proptest! {
        /// The Bloom filter in front of ID lookups never hides a present ID:
        /// `find` gives exactly the positions holding the ID, as a scan does.
        #[test]
        fn find_gives_every_position_of_an_id_filter_or_not(
            present in prop::collection::vec(0u32..3000, 0..400),
            asked in prop::collection::vec(0u32..3000, 1..60),
        ) {
            let id = |n: u32| format!("CVE-1971-{n:05}-filter-test");
            let summary = ScanSummary::new(
                present.iter().map(|n| GateFinding { id: id(*n).into(), severity: Severity::High, fixable: false }),
                None,
            );
            for n in asked.iter().chain(present.iter().take(20)) {
                let pinned = intern::Pinned::new(&id(*n));
                let found: Vec<usize> = summary.find(&pinned).collect();
                let scanned: Vec<usize> = (0..summary.len()).filter(|p| summary.is(*p, &pinned)).collect();
                prop_assert_eq!(found, scanned);
            }
        }

        /// The CVEs a message lists come from the kept first IDs per level
        /// when they suffice, and are the same as a pass over all findings.
        #[test]
        fn kept_first_ids_list_what_a_full_pass_lists(
            findings in prop::collection::vec(finding(), 0..80),
            ignored in prop::collection::vec(0..IDS.len(), 0..4),
            suppressed in prop::collection::vec(any::<bool>(), 80),
            fixable_only in any::<bool>(),
            vex in any::<bool>(),
            level in prop::sample::select(Severity::COUNTED.to_vec()),
        ) {
            let summary = ScanSummary::new(
                findings.iter().map(|(i, s, f)| GateFinding { id: IDS[*i].into(), severity: *s, fixable: *f }),
                None,
            );
            let ignored: Vec<String> = ignored.iter().map(|i| format!("{{id: {}}}", IDS[*i])).collect();
            let set = policies(&[format!(
                "action: Audit\nignoredCves: [{}]\nconditions: {{maxAllowedSeverities: {{low: 0}}, fixableOnly: {fixable_only}}}",
                ignored.join(", ")
            )]);
            let rule = &set.rules()[0];
            let today = EvalTime::at(now()).today;
            let is_suppressed = |p: usize| vex && suppressed.get(p).copied().unwrap_or(false);
            let pass = listed_by_pass(&summary, rule, level, today, &is_suppressed);
            if let Some(kept) = listed_from_kept(&summary, rule, level, today, &is_suppressed) {
                prop_assert_eq!(kept, pass);
            }
        }

        /// The scope index never hides a rule that applies, nor offers one
        /// twice: its candidates, filtered by the rule's own scope, are the
        /// rules a linear scan finds.
        #[test]
        fn the_scope_index_finds_exactly_the_rules_that_apply(
            scopes in prop::collection::vec((0..8usize, 0..4usize), 1..12),
            namespace in prop::sample::select(vec!["prod", "team-a", "Prod", "dev"]),
            registry in prop::sample::select(vec!["registry.example.com", "Registry.Example.com:443", "other.example.com:5000", "docker.io"]),
            known_image in any::<bool>(),
        ) {
            let scope = |kind: usize, v: usize| -> String {
                let ns = ["prod", "team-*", "*", "dev"][v];
                let reg = ["registry.example.com", "*.example.com", "other.example.com:5000", "*"][v];
                match kind {
                    0 => format!("scope: [{{matcherType: Namespace, values: [{ns:?}]}}]"),
                    1 => format!("scope: [{{matcherType: Namespace, operator: Equals, values: [{ns:?}, dev]}}]"),
                    2 => format!("scope: [{{matcherType: Namespace, operator: NotEquals, values: [{ns:?}]}}]"),
                    3 => format!("scope: [{{matcherType: Registry, values: [{reg:?}]}}]"),
                    4 => format!("scope: [{{matcherType: Registry, operator: Equals, values: [registry.example.com]}}, {{matcherType: Namespace, values: [{ns:?}]}}]"),
                    5 => "enabled: false".to_owned(),
                    6 => "scope: [{matcherType: Namespace, operator: StartsWith, values: [te]}]".to_owned(),
                    _ => String::new(),
                }
            };
            let rules: Vec<String> = scopes
                .iter()
                .map(|(k, v)| format!("action: Deny\n{}\nconditions: {{maxAllowedSeverities: {{critical: 0}}}}", scope(*k, *v)))
                .collect();
            let set = policies(&rules);
            prop_assert_eq!(set.rules().len(), rules.len());
            let image = ImageRef::parse(&format!("{registry}/app:1")).unwrap_or_else(|_| unreachable!());
            let labels = BTreeMap::new();
            let subject = Subject {
                namespace,
                kind: "Pod",
                workload: None,
                pod_name: Some("p"),
                labels: &labels,
                container: Some("c"),
                image: known_image.then_some(&image),
                digest: None,
            };
            let today = EvalTime::at(now()).today;
            let indexed: Vec<u32> = set.applicable(&subject, today).map(|(i, _)| i).collect();
            let scanned: Vec<u32> = (0..set.rules().len() as u32)
                .filter(|i| set.rules()[*i as usize].applies_to(&subject, today))
                .collect();
            prop_assert_eq!(indexed, scanned);
        }
    }
}
