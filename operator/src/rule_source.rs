//! The RuleSource controller (the portal sync, DESIGN §5): fetch, validate the
//! whole document, then server-side apply one SecurityArtifactPolicy per rule
//! and prune the managed ones whose rules are gone. A failure changes no
//! policy and sets `Degraded`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use portcullis_crds::{RuleSource, SecurityArtifactPolicy};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::document::{self, DocumentError, RuleDocument};
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::portal::{self, FetchError, Fetched};

/// Field manager of every write.
pub const MANAGER: &str = "portcullis-operator";
/// Label naming the RuleSource that manages a policy.
pub const SOURCE_LABEL: &str = "portcullis.dev/rule-source";
/// Annotation with the document revision a policy came from.
pub const REVISION_ANNOTATION: &str = "portcullis.dev/rule-source-revision";
const CONTROLLER: &str = "rulesource";
/// The interval assumed when `spec.interval` does not parse.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Shared by every reconcile.
pub struct Context {
    /// API client.
    pub client: kube::Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Events on RuleSources (absent in tests that do not check them).
    pub recorder: Option<Recorder>,
    /// Time limit of one portal fetch.
    pub fetch_timeout: Duration,
    /// Only the leader writes.
    pub leader: Leadership,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source could not be read.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The document is invalid.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// A rule's policy name is taken by a policy this source does not manage.
    #[error(
        "SecurityArtifactPolicy {0} exists and is not managed by this RuleSource; rename the rule or the policy"
    )]
    Conflict(String),
    /// The API server refused a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Leadership was lost in the middle of a sync.
    #[error("leadership lost; another replica continues")]
    NotLeader,
    /// `interval` does not parse.
    #[error("interval {0:?} is not a duration like 5m or 1h30m")]
    Interval(String),
}

impl Error {
    /// Condition reason and metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(e) => e.reason(),
            Self::Document(_) => "InvalidDocument",
            Self::Conflict(_) => "NameConflict",
            Self::Kube(_) => "APIError",
            Self::Interval(_) => "InvalidInterval",
            Self::NotLeader => "NotLeader",
        }
    }
}

/// The policy name for `rule` of `source`: `<source>-<rule>`, shortened with
/// a hash suffix when longer than a DNS label.
pub fn policy_name(source: &str, rule: &str) -> String {
    let name = format!("{source}-{rule}");
    if name.len() <= 63 {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let head: String = name.chars().take(54).collect();
    format!("{}-{hex}", head.trim_end_matches('-'))
}

/// Parses `5m`, `1h30m`, `45s`.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total += n * match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
    }
    (number.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

pub(crate) fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status does.
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(
            || Time(jiff::Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

fn is_synced(source: &RuleSource) -> bool {
    source.status.as_ref().is_some_and(|s| {
        s.observed_generation == source.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Synced" && c.status == "True")
            && !s
                .conditions
                .iter()
                .any(|c| c.type_ == "Degraded" && c.status == "True")
    })
}

/// Syncs one RuleSource.
pub async fn reconcile(source: Arc<RuleSource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = source.name_any();
    if !ctx.leader.is_leader() {
        // Followers read nothing and write nothing; they look again soon. They
        // export nothing about the source either: a sync time frozen when
        // this replica lost the lead would look like a stuck source.
        ctx.metrics.forget_source(&name);
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let started = Instant::now();
    let result = sync(&source, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    let interval = parse_interval(&source.spec.interval).unwrap_or(DEFAULT_INTERVAL);
    match result {
        Ok(applied) => {
            ctx.metrics.synced(&name, applied);
            ctx.metrics.source_state(&name, interval, false);
            Ok(Action::requeue(interval))
        }
        Err(Error::NotLeader) => {
            ctx.metrics.forget_source(&name);
            Ok(Action::requeue(Duration::from_secs(15)))
        }
        Err(e) => {
            ctx.metrics.source_state(&name, interval, true);
            ctx.metrics.failed(CONTROLLER, e.reason());
            // Record Degraded; the error itself goes to error_policy.
            if let Err(status_error) = set_degraded(&source, &ctx, &e).await {
                tracing::warn!(source = %source.name_any(), error = %status_error, "could not record Degraded");
            }
            Err(e)
        }
    }
}

/// Retries a failed sync sooner than the interval, never hot-looping.
pub fn error_policy(source: Arc<RuleSource>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(source = %source.name_any(), reason = error.reason(), error = %error, "rule source sync failed");
    let interval = parse_interval(&source.spec.interval).unwrap_or(DEFAULT_INTERVAL);
    Action::requeue(interval.min(Duration::from_secs(60)))
}

/// Metrics bookkeeping for the controller's results that never reach
/// [`reconcile`]: a RuleSource that was deleted shows up as `ObjectNotFound`
/// (its next requeue, or its policies being garbage-collected), and its
/// series go with it, so no alert fires for a source that no longer exists.
pub fn observe_controller_error<Q>(metrics: &Metrics, error: &controller::Error<Error, Q>)
where
    Q: std::error::Error + 'static,
{
    if let controller::Error::ObjectNotFound(object) = error {
        metrics.forget_source(&object.name);
    }
}

/// One sync; returns the number of rules in force from this source.
async fn sync(source: &RuleSource, ctx: &Context) -> Result<usize, Error> {
    let name = source.name_any();
    if parse_interval(&source.spec.interval).is_none() {
        return Err(Error::Interval(source.spec.interval.clone()));
    }
    let previous = source
        .status
        .as_ref()
        .filter(|_| is_synced(source))
        .and_then(|s| s.revision.clone());
    let fetched =
        portal::fetch(&ctx.client, source, previous.as_deref(), ctx.fetch_timeout).await?;
    let (text, revision) = match fetched {
        // Unchanged and already in force: nothing to write at all (but a
        // successful sync for the metrics: the source is healthy).
        Fetched::NotModified => {
            let applied = source
                .status
                .as_ref()
                .and_then(|s| s.applied_rules)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or_default();
            return Ok(applied);
        }
        Fetched::Document { text, revision } => (text, revision),
    };
    let doc = document::parse(&text, source.spec.format)?;
    let applied = apply(source, ctx, &doc, &revision).await?;
    let shown_revision = doc.revision.clone().unwrap_or_else(|| revision.clone());
    let conditions = source
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = source.metadata.generation;
    let message = format!("{applied} rules applied from revision {shown_revision}");
    let status = json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "RuleSource",
        "status": {
            "observedGeneration": generation,
            "lastSyncTime": Time(jiff::Timestamp::now()),
            "revision": revision,
            "appliedRules": applied,
            "conditions": [
                condition("Synced", true, "Synced", &message, generation, &conditions),
                condition("Degraded", false, "Synced", "", generation, &conditions),
            ],
        }
    });
    ensure_leader(ctx)?;
    Api::<RuleSource>::all(ctx.client.clone())
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(status),
        )
        .await?;
    publish(ctx, source, EventType::Normal, "Synced", &message).await;
    Ok(applied)
}

/// Applies the document's rules and prunes the rest; returns the count.
async fn apply(
    source: &RuleSource,
    ctx: &Context,
    doc: &RuleDocument,
    revision: &str,
) -> Result<usize, Error> {
    let name = source.name_any();
    let api: Api<SecurityArtifactPolicy> = Api::all(ctx.client.clone());
    // Every policy, to see both ours and names taken by others.
    let existing: BTreeMap<String, bool> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|p| {
            let ours = p.labels().get(SOURCE_LABEL) == Some(&name);
            (p.name_any(), ours)
        })
        .collect();
    let desired: Vec<(String, &document::DocumentRule)> = doc
        .rules
        .iter()
        .map(|r| (policy_name(&name, &r.name), r))
        .collect();
    // Refuse before writing anything when a name belongs to someone else.
    if let Some((taken, _)) = desired
        .iter()
        .find(|(n, _)| existing.get(n) == Some(&false))
    {
        return Err(Error::Conflict(taken.clone()));
    }
    let owner = source
        .controller_owner_ref(&())
        .map(|mut o: OwnerReference| {
            o.block_owner_deletion = Some(true);
            o
        });
    let shown_revision = doc.revision.as_deref().unwrap_or(revision);
    for (policy, rule) in &desired {
        let object = json!({
            "apiVersion": "portcullis.dev/v1alpha1",
            "kind": "SecurityArtifactPolicy",
            "metadata": {
                "name": policy,
                "labels": {SOURCE_LABEL: name, "app.kubernetes.io/managed-by": MANAGER},
                "annotations": {REVISION_ANNOTATION: shown_revision, "portcullis.dev/rule": rule.name},
                "ownerReferences": owner.iter().collect::<Vec<_>>(),
            },
            "spec": rule.spec,
        });
        ensure_leader(ctx)?;
        api.patch(
            policy,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await?;
    }
    for (policy, ours) in &existing {
        if *ours && !desired.iter().any(|(n, _)| n == policy) {
            ensure_leader(ctx)?;
            api.delete(policy, &DeleteParams::default()).await?;
        }
    }
    Ok(desired.len())
}

fn ensure_leader(ctx: &Context) -> Result<(), Error> {
    if ctx.leader.is_leader() {
        Ok(())
    } else {
        Err(Error::NotLeader)
    }
}

async fn set_degraded(
    source: &RuleSource,
    ctx: &Context,
    error: &Error,
) -> Result<(), kube::Error> {
    let conditions = source
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = source.metadata.generation;
    let message = error.to_string();
    // Synced keeps its value: the policies in force are still the last good ones.
    let mut new = vec![condition(
        "Degraded",
        false,
        error.reason(),
        &message,
        generation,
        &conditions,
    )];
    new[0].status = "True".into();
    if let Some(synced) = conditions.iter().find(|c| c.type_ == "Synced") {
        new.push(synced.clone());
    }
    let status = json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "RuleSource",
        "status": {"observedGeneration": generation, "conditions": new},
    });
    if !ctx.leader.is_leader() {
        return Ok(());
    }
    Api::<RuleSource>::all(ctx.client.clone())
        .patch_status(
            &source.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(status),
        )
        .await?;
    publish(ctx, source, EventType::Warning, error.reason(), &message).await;
    Ok(())
}

async fn publish(ctx: &Context, source: &RuleSource, type_: EventType, reason: &str, note: &str) {
    let Some(recorder) = &ctx.recorder else {
        return;
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &source.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish a RuleSource Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::ObjectRef;

    #[test]
    fn a_deleted_source_takes_its_series_with_it() {
        let metrics = Metrics::new().unwrap();
        metrics.synced("gone", 3);
        metrics.source_state("gone", Duration::from_secs(60), true);
        metrics.source_state("kept", Duration::from_secs(60), false);
        let not_found: controller::Error<Error, std::io::Error> = controller::Error::ObjectNotFound(
            Box::new(ObjectRef::<RuleSource>::new("gone").erase()),
        );
        observe_controller_error(&metrics, &not_found);
        let text = metrics.render();
        assert!(!text.contains("source=\"gone\""), "{text}");
        assert!(text.contains("portcullis_operator_rule_source_degraded{source=\"kept\"} 0"));
        // Other controller errors leave the series alone.
        let failed: controller::Error<Error, std::io::Error> = controller::Error::ReconcilerFailed(
            Error::NotLeader,
            Box::new(ObjectRef::<RuleSource>::new("kept").erase()),
        );
        observe_controller_error(&metrics, &failed);
        assert!(metrics.render().contains("source=\"kept\""));
    }
}
