//! One admission request, end to end: which images, their findings (looked
//! up concurrently, bounded in number and by the deadline), the engine's
//! decision per image, the answer, and the monitoring trail (log line,
//! metrics, Event).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::{Semaphore, mpsc};

use crate::admission::{ContainerKind, GatedContainer, OwnerTrust, Review, Workload};
use crate::engine::{
    Action, AdmissionDecision, AnswerOptions, ContainerDecision, Decision, Evidence,
    FailureActions, FailureClass, Subject, TargetEvidence, aggregate_with,
};
use crate::metrics::Metrics;
use crate::owners::OwnerVerifier;
use crate::policies::{PolicyStore, Snapshot};
use crate::reference::{ImageRef, RegistryHost, shown};
use crate::registry::Target;
use crate::registry::access::{CredentialResolver, PodIdentity};
use crate::registry::lookup::{ImageEvidence, ImageLookup, TargetFindings};

/// Bounds on what one review may ask the webhook to do.
#[derive(Debug, Clone, Copy)]
pub struct ReviewLimits {
    /// Distinct images judged per review; more is `LimitExceeded`.
    pub max_images: usize,
    /// Containers (and image volumes) judged per review; more is `LimitExceeded`.
    pub max_containers: usize,
    /// Registry lookups running in the background at once (they outlive
    /// the review that started them, to fill the cache); beyond it an image
    /// is answered as registry trouble at once.
    pub max_background_lookups: usize,
    /// How long a background lookup may run at most.
    pub lookup_budget: Duration,
}

impl Default for ReviewLimits {
    fn default() -> Self {
        ReviewLimits {
            max_images: 64,
            max_containers: 256,
            max_background_lookups: 4096,
            lookup_budget: Duration::from_secs(30),
        }
    }
}

/// Everything an admission needs; shared by all requests.
pub struct Gate {
    /// Rules and registry access in force.
    pub store: Arc<PolicyStore>,
    /// Findings lookups.
    pub lookup: ImageLookup,
    /// Credentials.
    pub credentials: CredentialResolver,
    /// Action per failure class.
    pub failures: FailureActions,
    /// Answer budget.
    pub deadline: Duration,
    /// Bounds per review.
    pub limits: ReviewLimits,
    /// Who may vouch for `ownerReferences`.
    pub owner_trust: OwnerTrust,
    /// In a cluster: owners are checked against the API.
    pub owners: Option<OwnerVerifier>,
    /// How answers are shaped (audit-only rollout).
    pub answer: AnswerOptions,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Gating Events, in a cluster.
    pub events: Option<EventSink>,
    /// Background lookup slots (see [`ReviewLimits::max_background_lookups`]).
    pub background: Arc<Semaphore>,
}

/// The decision for one container, with what the trail needs.
#[derive(Debug, Clone)]
pub struct ContainerOutcome {
    /// Container name (`volume:<name>` for image volumes, `*` for a whole-object decision).
    pub container: String,
    /// Image as shown (capped; with the deciding platform for an index).
    pub image: String,
    /// Digest judged (the platform's, for an index).
    pub digest: Option<String>,
    /// The engine's decision.
    pub decision: Decision,
    /// Signed artifacts of the judged target that no producer verified
    /// (`digest: why`), for the log line.
    pub rejected: Vec<String>,
}

/// The answer to one request and how it was reached.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What the API server is told.
    pub decision: AdmissionDecision,
    /// Per container (empty when nothing was gated).
    pub containers: Vec<ContainerOutcome>,
    /// The gated object.
    pub workload: Option<Workload>,
}

/// Well-known public registries, labelled by name in metrics.
const KNOWN_REGISTRIES: &[&str] = &[
    "docker.io",
    "ghcr.io",
    "quay.io",
    "gcr.io",
    "registry.k8s.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
    "cgr.dev",
    "nvcr.io",
];

impl Gate {
    /// A gate with the default bounds and failure actions, no Events and no
    /// owner verification; callers change what they need.
    pub fn new(
        store: Arc<PolicyStore>,
        lookup: ImageLookup,
        credentials: CredentialResolver,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limits = ReviewLimits::default();
        Gate {
            store,
            lookup,
            credentials,
            failures: FailureActions::default(),
            deadline: Duration::from_secs(3),
            limits,
            owner_trust: OwnerTrust::default(),
            owners: None,
            answer: AnswerOptions::default(),
            metrics,
            events: None,
            background: Arc::new(Semaphore::new(limits.max_background_lookups)),
        }
    }

    /// Answers a review.
    pub async fn review(&self, review: &Review) -> AdmissionDecision {
        let started = Instant::now();
        let req = &review.request;
        let outcome = match req.workload(&self.owner_trust) {
            Ok(Some(workload)) => self.judge(workload, started).await,
            Ok(None) => Outcome {
                decision: allowed(),
                containers: Vec::new(),
                workload: None,
            },
            Err(e) => Outcome {
                decision: AdmissionDecision {
                    allowed: false,
                    action: Action::Deny,
                    message: Some(format!("portcullis: {e}")),
                    warnings: Vec::new(),
                },
                containers: Vec::new(),
                workload: None,
            },
        };
        self.metrics.admission(
            &req.kind.kind,
            req.operation.as_str(),
            outcome.decision.action.as_str(),
            started.elapsed(),
        );
        self.trail(review, &outcome);
        outcome.decision
    }

    /// Judges the images of `workload`, answering by the deadline.
    pub async fn judge(&self, mut workload: Workload, started: Instant) -> Outcome {
        let deadline = tokio::time::Instant::from_std(started + self.deadline);
        self.verify_owner(&mut workload, deadline).await;
        let snapshot = self.store.snapshot();
        let now = Timestamp::now();

        let mut distinct: Vec<&str> = workload
            .containers
            .iter()
            .map(|c| c.image.as_str())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > self.limits.max_images
            || workload.containers.len() > self.limits.max_containers
        {
            let n = distinct.len();
            drop(distinct);
            return self.too_many(&snapshot, workload, n, now);
        }

        // One parse and (when a rule cares) one lookup per distinct image.
        let mut parsed: HashMap<&str, Result<ImageRef, String>> = HashMap::new();
        for image in &distinct {
            parsed.insert(image, ImageRef::parse(image).map_err(|e| e.to_string()));
        }
        let mut evidence: HashMap<&str, ImageEvidence> = HashMap::new();
        let mut waiting = Vec::new();
        for (image, r) in &parsed {
            let Ok(image_ref) = r else { continue };
            let wanted = workload
                .containers
                .iter()
                .filter(|c| c.image == *image)
                .any(|c| {
                    snapshot
                        .policies
                        .any_applies(&subject(&workload, &c.name, Some(image_ref), None), now)
                });
            if !wanted {
                continue;
            }
            let mut lookup = self.lookup_image(&snapshot, &workload, image_ref.clone());
            // Cached answers complete on the first poll; only lookups that
            // must wait on a registry become tasks (and keep filling the
            // cache if the deadline passes), within a bounded number.
            match futures::FutureExt::now_or_never(&mut lookup) {
                Some(ev) => {
                    evidence.insert(image, ev);
                }
                None => match self.background.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let budget = self.limits.lookup_budget;
                        waiting.push((
                            *image,
                            tokio::spawn(async move {
                                let _slot = slot;
                                tokio::time::timeout(budget, lookup).await.ok()
                            }),
                        ));
                    }
                    Err(_) => {
                        self.metrics.shed("background_lookups");
                        evidence.insert(
                            image,
                            ImageEvidence::failed(
                                FailureClass::RegistryUnavailable,
                                "the webhook has too many registry lookups in flight",
                            ),
                        );
                    }
                },
            }
        }
        // The tasks run concurrently; awaiting them in turn against one
        // absolute deadline waits no longer than the slowest.
        for (image, handle) in waiting {
            let ev = match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(Some(ev))) => ev,
                Ok(Ok(None)) | Err(_) => ImageEvidence::failed(
                    FailureClass::RegistryUnavailable,
                    format!(
                        "no answer from the registry within the {} ms deadline",
                        self.deadline.as_millis()
                    ),
                ),
                Ok(Err(e)) => ImageEvidence::failed(
                    FailureClass::RegistryUnavailable,
                    format!("lookup failed: {e}"),
                ),
            };
            evidence.insert(image, ev);
        }
        let containers: Vec<ContainerOutcome> = workload
            .containers
            .iter()
            .map(|c| match &parsed[c.image.as_str()] {
                Ok(image_ref) => self.judge_container(
                    &snapshot,
                    &workload,
                    c,
                    image_ref,
                    evidence.get(c.image.as_str()),
                    now,
                ),
                Err(e) => {
                    let s = subject(&workload, &c.name, None, None);
                    ContainerOutcome {
                        container: c.name.clone(),
                        image: shown_image(c),
                        digest: None,
                        rejected: Vec::new(),
                        decision: snapshot.policies.evaluate_unidentified(
                            &s,
                            FailureClass::InvalidReference,
                            e,
                            &self.failures,
                            now,
                        ),
                    }
                }
            })
            .collect();
        self.finish(containers, workload)
    }

    fn finish(&self, containers: Vec<ContainerOutcome>, workload: Workload) -> Outcome {
        let decisions: Vec<ContainerDecision> = containers
            .iter()
            .map(|c| ContainerDecision {
                container: c.container.clone(),
                image: c.image.clone(),
                decision: c.decision.clone(),
            })
            .collect();
        Outcome {
            decision: aggregate_with(&decisions, self.answer),
            containers,
            workload: Some(workload),
        }
    }

    /// More images than the webhook judges: one decision for the object.
    fn too_many(
        &self,
        snapshot: &Snapshot,
        workload: Workload,
        images: usize,
        now: Timestamp,
    ) -> Outcome {
        let detail = format!(
            "{} images ({images} distinct), more than the {} ({} distinct) judged per request",
            workload.containers.len(),
            self.limits.max_containers,
            self.limits.max_images
        );
        let s = Subject {
            container: None,
            ..subject(&workload, "", None, None)
        };
        let decision = snapshot.policies.evaluate_unidentified(
            &s,
            FailureClass::LimitExceeded,
            &detail,
            &self.failures,
            now,
        );
        let container = ContainerOutcome {
            container: "*".into(),
            image: format!("{} {}", workload.kind, workload.name),
            digest: None,
            decision,
            rejected: Vec::new(),
        };
        let mut w = workload;
        // Keep the trail small: the images are summarised by the detail.
        w.containers.clear();
        self.finish(vec![container], w)
    }

    /// In a cluster, a trusted owner claim counts only if the owner exists
    /// with that UID; its controller names the workload. Otherwise the Pod
    /// is judged as itself.
    async fn verify_owner(&self, workload: &mut Workload, deadline: tokio::time::Instant) {
        let (Some(verifier), Some(claim)) = (&self.owners, workload.owner.clone()) else {
            return;
        };
        let verified =
            tokio::time::timeout_at(deadline, verifier.workload(&workload.namespace, &claim)).await;
        match verified {
            Ok(Ok(Some(name))) => {
                if workload.kind == "Pod" || workload.workload.is_some() {
                    workload.workload = Some(name);
                }
            }
            outcome => {
                if let Ok(Err(e)) = &outcome {
                    tracing::warn!(error = %e, "could not verify an owner reference; judging the object as itself");
                }
                workload.owner = None;
                workload.owner_ignored = true;
                workload.workload = (workload.kind != "Pod").then(|| workload.name.clone());
            }
        }
    }

    /// The lookup of one image, as a future that owns what it needs (so it
    /// can become a task).
    fn lookup_image(
        &self,
        snapshot: &Arc<Snapshot>,
        workload: &Workload,
        image: ImageRef,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ImageEvidence> + Send + 'static>> {
        let lookup = self.lookup.clone();
        let credentials = self.credentials.clone();
        let snapshot = snapshot.clone();
        let namespace = workload.namespace.clone();
        let pull_secrets = workload.pull_secrets.clone();
        let service_account = workload.service_account.clone();
        Box::pin(async move {
            let pod = PodIdentity {
                namespace: &namespace,
                pull_secrets: &pull_secrets,
                service_account: &service_account,
            };
            let creds = match credentials.credentials(&snapshot.access, &image, pod).await {
                Ok(c) => c,
                Err(f) => return ImageEvidence::failed(f.class, f.detail),
            };
            let target = Target {
                label: registry_label(&snapshot, image.registry_host()),
                registry: image.registry_host().clone(),
                repository: image.repository().to_owned(),
                credentials: creds,
            };
            lookup
                .lookup(&image, target, snapshot.producers.clone())
                .await
        })
    }

    /// The strictest decision over the image's targets (all platforms must pass).
    fn judge_container(
        &self,
        snapshot: &Snapshot,
        w: &Workload,
        c: &GatedContainer,
        image_ref: &ImageRef,
        evidence: Option<&ImageEvidence>,
        now: Timestamp,
    ) -> ContainerOutcome {
        let policies = &snapshot.policies;
        let s = subject(w, &c.name, Some(image_ref), None);
        let shown_image = shown_image(c);
        let outcome = |decision, digest| ContainerOutcome {
            container: c.name.clone(),
            image: shown_image.clone(),
            digest,
            decision,
            rejected: Vec::new(),
        };
        let Some(evidence) = evidence else {
            // No rule applies: nothing was looked up.
            let (d, _) = policies.evaluate_targets(&s, &[], &self.failures, now);
            return outcome(d, None);
        };
        let digest = match &evidence.digest {
            Ok(d) => d.clone(),
            Err(f) => {
                let d = policies.evaluate(
                    &s,
                    Evidence::Failed {
                        class: f.class,
                        detail: &f.detail,
                    },
                    &self.failures,
                    now,
                );
                return outcome(d, None);
            }
        };
        let targets: Vec<TargetEvidence<'_>> = evidence
            .targets
            .iter()
            .map(|t| TargetEvidence {
                digest: &t.digest,
                evidence: match &t.findings {
                    Ok(TargetFindings::Artifacts(set)) => Evidence::Artifacts(set),
                    Ok(TargetFindings::NotScanned) => Evidence::Failed {
                        class: FailureClass::NoFindings,
                        detail: "",
                    },
                    Ok(TargetFindings::Malformed(d)) => Evidence::Failed {
                        class: FailureClass::MalformedFindings,
                        detail: d,
                    },
                    Err(f) => Evidence::Failed {
                        class: f.class,
                        detail: &f.detail,
                    },
                },
            })
            .collect();
        let s = Subject {
            digest: Some(&digest),
            ..s
        };
        let (decision, which) = policies.evaluate_targets(&s, &targets, &self.failures, now);
        match which.map(|i| &evidence.targets[i]) {
            Some(t) => ContainerOutcome {
                container: c.name.clone(),
                image: match &t.platform {
                    Some(p) if decision.action != Action::Allow => format!("{shown_image} ({p})"),
                    _ => shown_image.clone(),
                },
                digest: Some(t.digest.clone()),
                rejected: match &t.findings {
                    Ok(TargetFindings::Artifacts(set)) => set
                        .rejected
                        .iter()
                        .take(5)
                        .map(|(d, why)| format!("{d}: {}", crate::engine::truncate(why, 300)))
                        .collect(),
                    _ => Vec::new(),
                },
                decision,
            },
            None => outcome(decision, Some(digest)),
        }
    }

    /// Log line, metrics and Event for each audited or denied image.
    fn trail(&self, review: &Review, outcome: &Outcome) {
        let Some(w) = &outcome.workload else { return };
        let req = &review.request;
        for c in &outcome.containers {
            let Some(v) = c.decision.deciding() else {
                continue;
            };
            if c.decision.action == Action::Allow {
                continue;
            }
            let rule = v.rule.as_deref().unwrap_or("-");
            tracing::info!(
                target: "portcullis::decision",
                action = c.decision.action.as_str(),
                audit_only = self.answer.audit_only,
                rule,
                violation = %v.message,
                image = %c.image,
                digest = c.digest.as_deref().unwrap_or("-"),
                namespace = %w.namespace,
                kind = %w.kind,
                name = %shown(&w.name),
                container = %c.container,
                reason = v.reason.as_str(),
                uid = %req.uid,
                user = %shown(&req.user.username),
                owner_ignored = w.owner_ignored,
                rejected_artifacts = ?c.rejected,
                dry_run = req.dry_run,
                "image gated"
            );
            self.metrics
                .decision(c.decision.action.as_str(), rule, v.reason.as_str());
        }
        if let Some(events) = &self.events
            && !req.dry_run
            && outcome.decision.action != Action::Allow
        {
            let (reason, type_) = match outcome.decision.action {
                Action::Deny => ("GatingDeny", EventType::Warning),
                _ => ("GatingAudit", EventType::Normal),
            };
            let note = outcome
                .decision
                .message
                .clone()
                .or_else(|| outcome.decision.warnings.first().cloned());
            let reference = ObjectReference {
                api_version: Some(if req.kind.group.is_empty() {
                    req.kind.version.clone()
                } else {
                    format!("{}/{}", req.kind.group, req.kind.version)
                }),
                kind: Some(req.kind.kind.clone()),
                namespace: Some(w.namespace.clone()),
                name: Some(shown(&w.name).into_owned()),
                ..ObjectReference::default()
            };
            let event = Event {
                type_,
                reason: reason.into(),
                note: note.map(|n| crate::engine::truncate(&n, 1024)),
                action: "Admission".into(),
                secondary: None,
            };
            events.publish(event, reference, &self.metrics);
        }
    }
}

/// Gating Events go through a bounded queue to one publisher task: a burst
/// of denials must not become a burst of tasks and API calls. When the queue
/// is full the Event is dropped and counted (`portcullis_events_dropped_total`).
#[derive(Clone)]
pub struct EventSink {
    queue: mpsc::Sender<(Event, ObjectReference)>,
}

impl EventSink {
    /// Starts the publisher; `capacity` Events may wait.
    pub fn start(recorder: Recorder, capacity: usize) -> Self {
        let (queue, mut rx) = mpsc::channel::<(Event, ObjectReference)>(capacity.max(1));
        tokio::spawn(async move {
            while let Some((event, reference)) = rx.recv().await {
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::warn!(error = %e, "could not publish the gating Event");
                }
            }
        });
        EventSink { queue }
    }

    fn publish(&self, event: Event, reference: ObjectReference, metrics: &Metrics) {
        if self.queue.try_send((event, reference)).is_err() {
            metrics.event_dropped();
        }
    }
}

/// A bounded metrics label for a registry: the RegistryAccess pattern or rule
/// pattern that covers it, a well-known public registry, else `other`.
pub fn registry_label(snapshot: &Snapshot, registry: &RegistryHost) -> Arc<str> {
    if let Some(p) = snapshot
        .access
        .pattern_for(registry)
        .or_else(|| snapshot.policies.registry_pattern(registry))
    {
        return Arc::from(p);
    }
    match KNOWN_REGISTRIES.iter().find(|k| **k == registry.as_str()) {
        Some(k) => Arc::from(*k),
        None => Arc::from("other"),
    }
}

/// The image as messages show it: capped, and for an image volume followed
/// by `(volume:<name>)` so the user knows which part of the spec it is.
fn shown_image(c: &GatedContainer) -> String {
    match c.kind {
        ContainerKind::ImageVolume => format!("{} ({})", shown(&c.image), c.name),
        _ => shown(&c.image).into_owned(),
    }
}

fn allowed() -> AdmissionDecision {
    AdmissionDecision {
        allowed: true,
        action: Action::Allow,
        message: None,
        warnings: Vec::new(),
    }
}

fn subject<'a>(
    w: &'a Workload,
    container: &'a str,
    image: Option<&'a ImageRef>,
    digest: Option<&'a str>,
) -> Subject<'a> {
    Subject {
        namespace: &w.namespace,
        kind: &w.kind,
        workload: w.workload.as_deref(),
        pod_name: w.pod_name.as_deref(),
        labels: &w.labels,
        container: Some(container),
        image,
        digest,
    }
}
