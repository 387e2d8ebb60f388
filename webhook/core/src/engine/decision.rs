//! Decisions, their reasons and messages, and the aggregation of per-container
//! decisions into one admission answer (DESIGN §3.6).

use std::borrow::Cow;
use std::sync::Arc;

use super::evidence::FailureClass;
use crate::severity::Severity;

/// What happens to an image or a request. `Deny` > `Audit` > `Allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Admit silently.
    Allow,
    /// Admit with a warning, an Event and a log line.
    Audit,
    /// Reject.
    Deny,
}

impl Action {
    /// `Allow`, `Audit` or `Deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Audit => "Audit",
            Self::Deny => "Deny",
        }
    }
}

impl From<portcullis_crds::PolicyAction> for Action {
    fn from(a: portcullis_crds::PolicyAction) -> Self {
        match a {
            portcullis_crds::PolicyAction::Audit => Action::Audit,
            portcullis_crds::PolicyAction::Deny => Action::Deny,
        }
    }
}

/// Reason code carried by every message, Event, log line and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// No applicable rule was violated.
    Compliant,
    /// A `maxAllowedSeverities` limit was exceeded.
    SeverityThreshold,
    /// A `forbiddenCves` entry is present.
    ForbiddenCve,
    /// The registry is not in `allowedRegistries`.
    RegistryNotAllowed,
    /// The rule itself is invalid and fails closed (or audits) until fixed.
    InvalidRule,
    /// A failure class (DESIGN §3.5).
    Failure(FailureClass),
}

impl ReasonCode {
    /// The code as text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliant => "Compliant",
            Self::SeverityThreshold => "SeverityThreshold",
            Self::ForbiddenCve => "ForbiddenCve",
            Self::RegistryNotAllowed => "RegistryNotAllowed",
            Self::InvalidRule => "InvalidRule",
            Self::Failure(class) => class.as_str(),
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How severe a violation is, for ordering: image-level conditions first,
/// then missing findings, then the severity walk Critical → Unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// A failure class with no rule behind it.
    Failure,
    /// A finding at this level.
    Finding(Severity),
    /// No usable findings (`blockUnscannedImages`).
    Unscanned,
    /// The image's registry (`allowedRegistries`).
    Registry,
}

/// One violated condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The rule, or `None` for a failure class's configured action.
    pub rule: Option<Arc<str>>,
    /// Priority of the rule (failure classes rank after every rule).
    pub priority: i32,
    /// The rule's action, or the failure class's configured one.
    pub action: Action,
    /// The reason code.
    pub reason: ReasonCode,
    /// Where in the walk it was found.
    pub stage: Stage,
    /// Human-readable text, e.g. `Image contains 2 high or higher CVEs, which is more than the allowed count of: 0`.
    pub message: String,
    /// The CVEs involved, strongest first (at most [`MAX_LISTED_CVES`]).
    pub cves: Vec<Arc<str>>,
}

/// CVEs listed per violation.
pub const MAX_LISTED_CVES: usize = 10;

/// The decision for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The strictest action among the violations; `Allow` when there are none.
    pub action: Action,
    /// Every violation, deciding one first: strictest action, then most severe
    /// stage, then strongest priority, then rule name.
    pub violations: Vec<Violation>,
    /// Number of rules that applied to the image.
    pub applicable_rules: usize,
}

impl Decision {
    /// The violation that decided, if any.
    pub fn deciding(&self) -> Option<&Violation> {
        self.violations.first()
    }

    /// The reason code of the decision.
    pub fn reason(&self) -> ReasonCode {
        self.deciding().map_or(ReasonCode::Compliant, |v| v.reason)
    }

    /// `<image>: <violation> (rule <name>)`, for the deciding violation.
    pub fn message(&self, image: &str) -> Option<String> {
        self.deciding().map(|v| violation_line(image, v))
    }
}

/// A violated condition before its message is written: what decides and
/// orders it. [`PolicySet::render`](super::PolicySet::render) writes it out
/// from the inputs that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The rule's index in [`PolicySet::rules`](super::PolicySet::rules),
    /// or `None` for a failure class's configured action.
    pub rule: Option<u32>,
    /// For a failure class: the rule whose evidence ran into it (the detail
    /// shown comes from there); for a rule: the rule.
    pub source: u32,
    /// Priority of the rule (failure classes rank after every rule).
    pub priority: i32,
    /// The rule's action, or the failure class's configured one.
    pub action: Action,
    /// The reason code.
    pub reason: ReasonCode,
    /// Where in the walk it was found.
    pub stage: Stage,
}

/// The decision for one image without its messages: what the engine works
/// out for every container, while messages are written only for what an
/// answer shows ([`aggregate_judged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The strictest action among the violations; `Allow` when there are none.
    pub action: Action,
    /// Every violation, in [`Decision::violations`] order.
    pub hits: Vec<Hit>,
    /// Number of rules that applied to the image.
    pub applicable_rules: usize,
}

impl Verdict {
    /// The violation that decided, if any.
    pub fn deciding(&self) -> Option<&Hit> {
        self.hits.first()
    }

    /// The reason code of the decision.
    pub fn reason(&self) -> ReasonCode {
        self.deciding().map_or(ReasonCode::Compliant, |v| v.reason)
    }
}

/// What an answer is built from, per container: the image shown, the
/// action, and the violations, written out only when they are shown.
pub trait Judged {
    /// The image as shown.
    fn image(&self) -> &str;
    /// The container's action.
    fn action(&self) -> Action;
    /// How many violations (deciding one first).
    fn violations(&self) -> usize;
    /// The action of violation `i`.
    fn violation_action(&self, i: usize) -> Action;
    /// Violation `i`, written out.
    fn violation(&self, i: usize) -> Cow<'_, Violation>;
}

impl Judged for ContainerDecision {
    fn image(&self) -> &str {
        &self.image
    }

    fn action(&self) -> Action {
        self.decision.action
    }

    fn violations(&self) -> usize {
        self.decision.violations.len()
    }

    fn violation_action(&self, i: usize) -> Action {
        self.decision.violations[i].action
    }

    fn violation(&self, i: usize) -> Cow<'_, Violation> {
        Cow::Borrowed(&self.decision.violations[i])
    }
}

/// `<image>: <violation> (rule <name>)` for a container's deciding violation.
pub fn deciding_message<J: Judged + ?Sized>(c: &J) -> Option<String> {
    if c.violations() == 0 {
        return None;
    }
    Some(violation_line(c.image(), &c.violation(0)))
}

fn violation_line(image: &str, v: &Violation) -> String {
    match &v.rule {
        Some(rule) => format!("{image}: {} (rule {rule})", v.message),
        None => format!("{image}: {} (reason {})", v.message, v.reason),
    }
}

/// The decision for one container of the admitted object.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerDecision {
    /// Container name.
    pub container: String,
    /// Image as shown to the user.
    pub image: String,
    /// The decision.
    pub decision: Decision,
}

/// Limits that keep answers inside what the API server passes on.
pub mod limits {
    /// Longest denial message.
    pub const MAX_MESSAGE_BYTES: usize = 4096;
    /// Most warnings per answer.
    pub const MAX_WARNINGS: usize = 10;
    /// Longest warning (the API server truncates longer ones).
    pub const MAX_WARNING_BYTES: usize = 256;
}

/// The answer to one admission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionDecision {
    /// False when any container is denied.
    pub allowed: bool,
    /// The strictest action over all containers.
    pub action: Action,
    /// For a denial: one line per denied image.
    pub message: Option<String>,
    /// For audited images: one warning per audited image.
    pub warnings: Vec<String>,
}

/// How answers are shaped beyond the decisions themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnswerOptions {
    /// Audit-first rollout: every Deny acts as Audit, and the warning says
    /// what would have been denied.
    pub audit_only: bool,
}

/// Any Deny denies the request; otherwise any Audit admits it with warnings.
pub fn aggregate(containers: &[ContainerDecision]) -> AdmissionDecision {
    aggregate_with(containers, AnswerOptions::default())
}

/// [`aggregate`], shaped by `options`. Warnings are formatted only for the
/// violations shown; the rest are counted.
pub fn aggregate_with(
    containers: &[ContainerDecision],
    options: AnswerOptions,
) -> AdmissionDecision {
    aggregate_judged(containers, options)
}

/// [`aggregate_with`] over anything [`Judged`]: a violation is written out
/// only when the answer shows it (the deciding one of a denied container,
/// and the first [`limits::MAX_WARNINGS`] audited ones); the rest are counted.
pub fn aggregate_judged<J: Judged>(containers: &[J], options: AnswerOptions) -> AdmissionDecision {
    let strictest = containers
        .iter()
        .map(Judged::action)
        .max()
        .unwrap_or(Action::Allow);
    let action = if options.audit_only && strictest == Action::Deny {
        Action::Audit
    } else {
        strictest
    };
    let denied: Vec<String> = containers
        .iter()
        .filter(|c| c.action() == Action::Deny)
        .filter_map(deciding_message)
        .collect();
    // Format at most MAX_WARNINGS; count the rest.
    let mut warnings: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut push = |w: &dyn Fn() -> String| {
        if warnings.len() < limits::MAX_WARNINGS {
            let text = w();
            if warnings.last() == Some(&text) {
                return;
            }
            warnings.push(text);
        }
        total += 1;
    };
    if options.audit_only {
        for d in &denied {
            push(&|| {
                truncate_owned(
                    format!("portcullis audit-only, would deny: {d}"),
                    limits::MAX_WARNING_BYTES,
                )
            });
        }
    }
    for c in containers {
        for i in (0..c.violations()).filter(|i| c.violation_action(*i) == Action::Audit) {
            push(&|| audit_warning(c.image(), &c.violation(i)));
        }
    }
    if total > limits::MAX_WARNINGS {
        warnings.truncate(limits::MAX_WARNINGS - 1);
        let more = total - (limits::MAX_WARNINGS - 1);
        warnings.push(format!(
            "portcullis: {more} more audited violations not shown"
        ));
    }
    let message = (!denied.is_empty() && !options.audit_only)
        .then(|| truncate(&denied.join("; "), limits::MAX_MESSAGE_BYTES));
    AdmissionDecision {
        allowed: action != Action::Deny,
        action,
        message,
        warnings,
    }
}

fn audit_warning(image: &str, v: &Violation) -> String {
    // Written into one buffer: with violations on every admission, the
    // intermediate strings (rule, CVE list, the whole line, its truncated
    // copy) were a measurable share of a warm answer.
    use std::fmt::Write as _;
    let mut out = String::with_capacity(
        48 + image.len() + v.message.len() + v.cves.iter().map(|c| c.len() + 2).sum::<usize>(),
    );
    out.push_str("portcullis audited ");
    out.push_str(image);
    match &v.rule {
        Some(rule) => {
            out.push_str(" (rule ");
            out.push_str(rule);
        }
        None => {
            // Writing to a String cannot fail.
            let _ = write!(out, " (reason {}", v.reason);
        }
    }
    out.push_str("): ");
    out.push_str(&v.message);
    for (i, cve) in v.cves.iter().enumerate() {
        out.push_str(if i == 0 { ": " } else { ", " });
        out.push_str(cve);
    }
    truncate_owned(out, limits::MAX_WARNING_BYTES)
}

/// [`truncate`] for a string already owned: cut in place, no copy.
fn truncate_owned(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(cut_at(&text, max));
        text.push_str("...");
    }
    text
}

/// Where to cut `text` so that it and "..." fit in `max` bytes.
fn cut_at(text: &str, max: usize) -> usize {
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    format!("{}...", &text[..cut_at(text, max)])
}
