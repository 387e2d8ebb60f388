//! One admission request, end to end: which images, their findings (looked
//! up concurrently, bounded in number and by the deadline), the engine's
//! decision per image, the answer, and the monitoring trail (log line,
//! metrics, Event).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::{Semaphore, mpsc};

use crate::admission::{
    AdmissionError, ContainerKind, GatedContainer, OwnerTrust, Review, Workload,
};
use crate::engine::{
    Action, AdmissionDecision, AnswerOptions, Decision, EvalTime, Evidence, FailureActions,
    FailureClass, Judged, Subject, TargetEvidence, Verdict, Violation, aggregate_judged,
};
use crate::metrics::Metrics;
use crate::owners::OwnerVerifier;
use crate::policies::{PolicyStore, Snapshot};
use crate::reference::{ImageRef, RegistryHost, shown};
use crate::registry::Target;
use crate::registry::access::{CredentialResolver, PodIdentity};
use crate::registry::auth::Credentials;
use crate::registry::lookup::{
    Cached, ImageEvidence, ImageLookup, TargetEvidence as LookupTarget, TargetFindings,
};

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
    /// Image references as written, parsed.
    pub references: ParsedReferences,
}

/// Image references as written in pod specs, parsed: the same few hundred
/// names come back on every admission, and parsing (validation and
/// normalisation, seven allocations) was a twentieth of a warm admission.
/// Parsing is a pure function of the text, so sharing results across tenants
/// tells nobody anything. Bounded by bytes; only references that parse are kept.
#[derive(Clone)]
pub struct ParsedReferences(moka::sync::Cache<Arc<str>, Arc<ImageRef>>);

impl ParsedReferences {
    /// A cache of at most `max_bytes` (texts and parsed references).
    pub fn new(max_bytes: u64) -> Self {
        ParsedReferences(
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|text: &Arc<str>, parsed: &Arc<ImageRef>| {
                    // The text, the parsed copies (registry, repository,
                    // name, whole reference) and the entry's own overhead.
                    u32::try_from(text.len() + 4 * parsed.as_str().len() + 256).unwrap_or(u32::MAX)
                })
                .build(),
        )
    }

    /// `text` parsed.
    pub fn parse(&self, text: &str) -> Result<Arc<ImageRef>, String> {
        if let Some(parsed) = self.0.get(text) {
            return Ok(parsed);
        }
        let parsed = Arc::new(ImageRef::parse(text).map_err(|e| e.to_string())?);
        self.0.insert(text.into(), parsed.clone());
        Ok(parsed)
    }
}

impl Default for ParsedReferences {
    fn default() -> Self {
        ParsedReferences::new(4 * 1024 * 1024)
    }
}

/// How one container was judged: fully written out (references that do not
/// parse, requests too big to judge), or a verdict whose violations are
/// written out only when the answer or the trail shows them.
#[derive(Debug, Clone)]
pub enum Ruling {
    /// Every violation written out.
    Written(Decision),
    /// Decided; messages on demand ([`Judgement::violation`]).
    Pending(Verdict),
}

impl Ruling {
    /// The container's action.
    pub fn action(&self) -> Action {
        match self {
            Ruling::Written(d) => d.action,
            Ruling::Pending(v) => v.action,
        }
    }
}

/// The decision for one container, with what the answer and the trail need.
#[derive(Debug, Clone)]
pub struct ContainerJudgement<'w> {
    /// Container name (`volume:<name>` for image volumes, `*` for a whole-object decision).
    pub container: &'w str,
    /// Image as shown (capped; with the deciding platform for an index).
    pub image: Cow<'w, str>,
    /// The image it was judged as (an index into the judgement's images),
    /// and the target (platform) that decided.
    basis: Option<(usize, Option<usize>)>,
    /// The decision.
    pub ruling: Ruling,
}

/// One distinct image of a request: as written, parsed, and what was found.
struct Image<'w> {
    text: &'w str,
    parsed: Result<Arc<ImageRef>, String>,
    evidence: Option<Arc<ImageEvidence>>,
}

/// One request's judgement: per container, what the engine decided, and
/// everything needed to write out the violations an answer shows.
pub struct Judgement<'w> {
    snapshot: Arc<Snapshot>,
    workload: &'w Workload,
    at: EvalTime,
    failures: FailureActions,
    images: Vec<Image<'w>>,
    /// Per container (empty when nothing was gated).
    pub containers: Vec<ContainerJudgement<'w>>,
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
            references: ParsedReferences::default(),
        }
    }

    /// Answers a review.
    pub async fn review(&self, review: &Review<'_>) -> AdmissionDecision {
        self.answer(review, self.workload(review)).await
    }

    /// What `review` asks to run. Read before [`answer`](Self::answer), so
    /// that the server can drop the body (which the review's objects borrow
    /// from) before waiting on registries.
    pub fn workload(&self, review: &Review<'_>) -> Result<Option<Workload>, AdmissionError> {
        review.request.workload(&self.owner_trust)
    }

    /// Answers a review whose workload was read by [`workload`](Self::workload).
    pub async fn answer(
        &self,
        review: &Review<'_>,
        workload: Result<Option<Workload>, AdmissionError>,
    ) -> AdmissionDecision {
        let started = Instant::now();
        let workload = match workload {
            Ok(Some(mut workload)) => {
                let deadline = tokio::time::Instant::from_std(started + self.deadline);
                self.verify_owner(&mut workload, deadline).await;
                Some(workload)
            }
            Ok(None) => None,
            Err(e) => {
                let decision = AdmissionDecision {
                    allowed: false,
                    action: Action::Deny,
                    message: Some(format!("portcullis: {e}")),
                    warnings: Vec::new(),
                };
                self.count(review, &decision, started);
                return decision;
            }
        };
        let Some(workload) = workload else {
            let decision = allowed();
            self.count(review, &decision, started);
            return decision;
        };
        let judged = self.judge(&workload, started).await;
        let decision = judged.answer(self.answer);
        self.count(review, &decision, started);
        self.trail(review, &judged, &decision);
        decision
    }

    fn count(&self, review: &Review<'_>, decision: &AdmissionDecision, started: Instant) {
        let req = &review.request;
        self.metrics.admission(
            &req.kind.kind,
            req.operation.as_str(),
            decision.action.as_str(),
            started.elapsed(),
        );
    }

    /// Judges the images of `workload`, answering by the deadline. Cached
    /// evidence is read without waiting; only lookups that must ask a
    /// registry wait (concurrently, against one deadline).
    pub async fn judge<'w>(&self, workload: &'w Workload, started: Instant) -> Judgement<'w> {
        let deadline = tokio::time::Instant::from_std(started + self.deadline);
        let snapshot = self.store.snapshot();
        let at = EvalTime::at(Timestamp::now());
        let mut judgement = Judgement {
            snapshot,
            workload,
            at,
            failures: self.failures,
            images: Vec::new(),
            containers: Vec::with_capacity(workload.containers.len()),
        };

        // Distinct images, in order of appearance; each container's among them.
        let mut slot_of: Vec<usize> = Vec::with_capacity(workload.containers.len());
        for c in &workload.containers {
            let slot = match judgement.images.iter().position(|i| i.text == c.image) {
                Some(i) => i,
                None => {
                    if judgement.images.len() == self.limits.max_images {
                        // More distinct images than judged: counted below.
                        usize::MAX
                    } else {
                        judgement.images.push(Image {
                            text: &c.image,
                            parsed: Err(String::new()),
                            evidence: None,
                        });
                        judgement.images.len() - 1
                    }
                }
            };
            slot_of.push(slot);
        }
        if slot_of.contains(&usize::MAX) || workload.containers.len() > self.limits.max_containers {
            let mut distinct: Vec<&str> = workload
                .containers
                .iter()
                .map(|c| c.image.as_str())
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            let n = distinct.len();
            return self.too_many(judgement, n);
        }
        for image in &mut judgement.images {
            image.parsed = self.references.parse(image.text);
        }

        // One lookup per distinct image some rule cares about.
        let snapshot = judgement.snapshot.clone();
        let pod = PodIdentity {
            namespace: &workload.namespace,
            pull_secrets: &workload.pull_secrets,
            service_account: &workload.service_account,
        };
        let mut waiting = Vec::new();
        for (slot, image) in judgement.images.iter_mut().enumerate() {
            let Ok(image_ref) = &image.parsed else {
                continue;
            };
            let wanted = workload
                .containers
                .iter()
                .zip(&slot_of)
                .filter(|(_, s)| **s == slot)
                .any(|(c, _)| {
                    snapshot
                        .policies
                        .any_applies_at(&subject(workload, &c.name, Some(image_ref), None), &at)
                });
            if !wanted {
                continue;
            }
            // Credentials first (usually at once: no RegistryAccess, or a
            // Secret already read); with them, the front cache.
            let resolved = if snapshot.access.is_anonymous(image_ref.registry_host()) {
                Some(Ok(Credentials::Anonymous))
            } else {
                futures::FutureExt::now_or_never(self.credentials.credentials(
                    &snapshot.access,
                    image_ref,
                    pod,
                ))
            };
            if let Some(creds) = &resolved {
                let creds = match creds {
                    Ok(c) => c,
                    Err(f) => {
                        image.evidence =
                            Some(Arc::new(ImageEvidence::failed(f.class, f.detail.clone())));
                        continue;
                    }
                };
                match self
                    .lookup
                    .cached(image_ref, creds, &snapshot.producers)
                    .await
                {
                    Cached::Fresh(ev) => {
                        image.evidence = Some(ev);
                        continue;
                    }
                    Cached::Stale(ev) => {
                        image.evidence = Some(ev);
                        self.lookup
                            .refresh(
                                ImageRef::clone(image_ref),
                                target(&snapshot, image_ref, creds.clone()),
                                snapshot.producers.clone(),
                            )
                            .await;
                        continue;
                    }
                    Cached::Miss => {}
                }
            }
            let mut lookup = self.lookup_image(
                &snapshot,
                workload,
                ImageRef::clone(image_ref),
                resolved.and_then(Result::ok),
            );
            // Lookups that complete without waiting (the step caches) need
            // no task; the others become tasks (and keep filling the cache
            // if the deadline passes), within a bounded number.
            match futures::FutureExt::now_or_never(&mut lookup) {
                Some(ev) => image.evidence = Some(ev),
                None => match self.background.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let budget = self.limits.lookup_budget;
                        waiting.push((
                            slot,
                            tokio::spawn(async move {
                                let _permit = permit;
                                tokio::time::timeout(budget, lookup).await.ok()
                            }),
                        ));
                    }
                    Err(_) => {
                        self.metrics.shed("background_lookups");
                        image.evidence = Some(Arc::new(ImageEvidence::failed(
                            FailureClass::RegistryUnavailable,
                            "the webhook has too many registry lookups in flight",
                        )));
                    }
                },
            }
        }
        // The tasks run concurrently; awaiting them in turn against one
        // absolute deadline waits no longer than the slowest.
        for (slot, handle) in waiting {
            let ev = match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(Some(ev))) => ev,
                Ok(Ok(None)) | Err(_) => Arc::new(ImageEvidence::failed(
                    FailureClass::RegistryUnavailable,
                    format!(
                        "no answer from the registry within the {} ms deadline",
                        self.deadline.as_millis()
                    ),
                )),
                Ok(Err(e)) => Arc::new(ImageEvidence::failed(
                    FailureClass::RegistryUnavailable,
                    format!("lookup failed: {e}"),
                )),
            };
            judgement.images[slot].evidence = Some(ev);
        }

        // The engine, per container; messages are left for the answer.
        let policies = &snapshot.policies;
        let mut targets: Vec<TargetEvidence<'_>> = Vec::new();
        for (c, &slot) in workload.containers.iter().zip(&slot_of) {
            let image = &judgement.images[slot];
            let shown_image = shown_image(c);
            let judged = match &image.parsed {
                Err(e) => {
                    let s = subject(workload, &c.name, None, None);
                    ContainerJudgement {
                        container: &c.name,
                        image: shown_image,
                        basis: None,
                        ruling: Ruling::Written(policies.evaluate_unidentified(
                            &s,
                            FailureClass::InvalidReference,
                            e,
                            &self.failures,
                            at.now,
                        )),
                    }
                }
                Ok(image_ref) => {
                    let s = subject(workload, &c.name, Some(image_ref), None);
                    let (verdict, which) = match image.evidence.as_deref() {
                        // No rule applies: nothing was looked up.
                        None => policies.judge_targets(&s, &[], &self.failures, &at),
                        Some(ev) => match &ev.digest {
                            Err(f) => (
                                policies.judge(
                                    &s,
                                    Evidence::Failed {
                                        class: f.class,
                                        detail: &f.detail,
                                    },
                                    &self.failures,
                                    &at,
                                ),
                                None,
                            ),
                            Ok(digest) => {
                                targets.clear();
                                targets.extend(ev.targets.iter().map(engine_target));
                                let s = Subject {
                                    digest: Some(digest),
                                    ..s
                                };
                                policies.judge_targets(&s, &targets, &self.failures, &at)
                            }
                        },
                    };
                    let platform = which
                        .and_then(|i| image.evidence.as_ref()?.targets.get(i)?.platform.as_ref());
                    ContainerJudgement {
                        container: &c.name,
                        image: match platform {
                            Some(p) if verdict.action != Action::Allow => {
                                Cow::Owned(format!("{shown_image} ({p})"))
                            }
                            _ => shown_image,
                        },
                        basis: Some((slot, which)),
                        ruling: Ruling::Pending(verdict),
                    }
                }
            };
            judgement.containers.push(judged);
        }
        judgement
    }

    /// More images than the webhook judges: one decision for the object.
    fn too_many<'w>(&self, mut judgement: Judgement<'w>, images: usize) -> Judgement<'w> {
        let workload = judgement.workload;
        let detail = format!(
            "{} images ({images} distinct), more than the {} ({} distinct) judged per request",
            workload.containers.len(),
            self.limits.max_containers,
            self.limits.max_images
        );
        let s = Subject {
            container: None,
            ..subject(workload, "", None, None)
        };
        let decision = judgement.snapshot.policies.evaluate_unidentified(
            &s,
            FailureClass::LimitExceeded,
            &detail,
            &self.failures,
            judgement.at.now,
        );
        judgement.images.clear();
        judgement.containers = vec![ContainerJudgement {
            container: "*",
            image: Cow::Owned(format!("{} {}", workload.kind, workload.name)),
            basis: None,
            ruling: Ruling::Written(decision),
        }];
        judgement
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
    /// can become a task); `credentials` when already resolved.
    fn lookup_image(
        &self,
        snapshot: &Arc<Snapshot>,
        workload: &Workload,
        image: ImageRef,
        credentials: Option<Credentials>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Arc<ImageEvidence>> + Send + 'static>>
    {
        let lookup = self.lookup.clone();
        let snapshot = snapshot.clone();
        if let Some(creds) = credentials {
            return Box::pin(async move {
                let target = target(&snapshot, &image, creds);
                lookup
                    .lookup(&image, target, snapshot.producers.clone())
                    .await
            });
        }
        let resolver = self.credentials.clone();
        let namespace = workload.namespace.clone();
        let pull_secrets = workload.pull_secrets.clone();
        let service_account = workload.service_account.clone();
        Box::pin(async move {
            let pod = PodIdentity {
                namespace: &namespace,
                pull_secrets: &pull_secrets,
                service_account: &service_account,
            };
            let creds = match resolver.credentials(&snapshot.access, &image, pod).await {
                Ok(c) => c,
                Err(f) => return Arc::new(ImageEvidence::failed(f.class, f.detail)),
            };
            let target = target(&snapshot, &image, creds);
            lookup
                .lookup(&image, target, snapshot.producers.clone())
                .await
        })
    }

    /// Log line, metrics and Event for each audited or denied image.
    fn trail(&self, review: &Review<'_>, judged: &Judgement<'_>, decision: &AdmissionDecision) {
        let w = judged.workload;
        let req = &review.request;
        let logged = tracing::enabled!(target: "portcullis::decision", tracing::Level::INFO);
        for c in &judged.containers {
            let action = c.ruling.action();
            if action == Action::Allow {
                continue;
            }
            let (rule, reason) = match &c.ruling {
                Ruling::Written(d) => match d.deciding() {
                    Some(v) => (v.rule.as_deref().unwrap_or("-"), v.reason),
                    None => continue,
                },
                Ruling::Pending(v) => match v.deciding() {
                    Some(hit) => (
                        hit.rule
                            .and_then(|i| judged.snapshot.policies.rules().get(i as usize))
                            .map_or("-", |r| r.name()),
                        hit.reason,
                    ),
                    None => continue,
                },
            };
            if logged {
                let violation = judged.violation(c, 0);
                tracing::info!(
                    target: "portcullis::decision",
                    action = action.as_str(),
                    audit_only = self.answer.audit_only,
                    rule,
                    violation = %violation.message,
                    image = %c.image,
                    digest = judged.digest(c).unwrap_or("-"),
                    namespace = %w.namespace,
                    kind = %w.kind,
                    name = %shown(&w.name),
                    container = %c.container,
                    reason = reason.as_str(),
                    uid = %req.uid,
                    user = %shown(&req.user.username),
                    owner_ignored = w.owner_ignored,
                    rejected_artifacts = ?judged.rejected(c),
                    dry_run = req.dry_run,
                    "image gated"
                );
            }
            self.metrics
                .decision(action.as_str(), rule, reason.as_str());
        }
        if let Some(events) = &self.events
            && !req.dry_run
            && decision.action != Action::Allow
        {
            let (reason, type_) = match decision.action {
                Action::Deny => ("GatingDeny", EventType::Warning),
                _ => ("GatingAudit", EventType::Normal),
            };
            let note = decision
                .message
                .clone()
                .or_else(|| decision.warnings.first().cloned());
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

impl<'w> Judgement<'w> {
    /// The answer: violations written out only where it shows them.
    pub fn answer(&self, options: AnswerOptions) -> AdmissionDecision {
        let items: Vec<Shown<'_, 'w>> = self
            .containers
            .iter()
            .map(|c| Shown { judged: self, c })
            .collect();
        aggregate_judged(&items, options)
    }

    /// The subject and evidence a container was judged on.
    fn basis<'a>(&'a self, c: &'a ContainerJudgement<'w>) -> Option<(Subject<'a>, Evidence<'a>)> {
        let (slot, which) = c.basis?;
        let image = self.images.get(slot)?;
        let image_ref = image.parsed.as_ref().ok()?;
        let s = subject(self.workload, c.container, Some(image_ref), None);
        Some(match image.evidence.as_deref() {
            None => (s, NO_FINDINGS),
            Some(ev) => match &ev.digest {
                Err(f) => (
                    s,
                    Evidence::Failed {
                        class: f.class,
                        detail: &f.detail,
                    },
                ),
                Ok(digest) => {
                    let s = Subject {
                        digest: Some(digest),
                        ..s
                    };
                    match which.and_then(|i| ev.targets.get(i)) {
                        Some(t) => (
                            Subject {
                                digest: Some(&t.digest),
                                ..s
                            },
                            engine_target(t).evidence,
                        ),
                        None => (s, NO_FINDINGS),
                    }
                }
            },
        })
    }

    /// Violation `i` of container `c`, written out.
    pub fn violation<'a>(&'a self, c: &'a ContainerJudgement<'w>, i: usize) -> Cow<'a, Violation> {
        match &c.ruling {
            Ruling::Written(d) => Cow::Borrowed(&d.violations[i]),
            Ruling::Pending(v) => {
                let hit = &v.hits[i];
                let policies = &self.snapshot.policies;
                Cow::Owned(match self.basis(c) {
                    Some((s, evidence)) => {
                        policies.render(hit, &s, evidence, &self.failures, &self.at)
                    }
                    None => {
                        let s = subject(self.workload, c.container, None, None);
                        policies.render(hit, &s, NO_FINDINGS, &self.failures, &self.at)
                    }
                })
            }
        }
    }

    /// The digest judged for `c` (the deciding platform's, for an index).
    pub fn digest(&self, c: &ContainerJudgement<'_>) -> Option<&str> {
        let (slot, which) = c.basis?;
        let ev = self.images.get(slot)?.evidence.as_deref()?;
        match which.and_then(|i| ev.targets.get(i)) {
            Some(t) => Some(&t.digest),
            None => ev.digest.as_deref().ok(),
        }
    }

    /// Signed artifacts of the judged target that no producer verified
    /// (`digest: why`), for the log line.
    pub fn rejected(&self, c: &ContainerJudgement<'_>) -> Vec<String> {
        let Some((slot, Some(which))) = c.basis else {
            return Vec::new();
        };
        let Some(t) = self
            .images
            .get(slot)
            .and_then(|i| i.evidence.as_deref())
            .and_then(|ev| ev.targets.get(which))
        else {
            return Vec::new();
        };
        match &t.findings {
            Ok(TargetFindings::Artifacts(set)) => set
                .rejected
                .iter()
                .take(5)
                .map(|(d, why)| format!("{d}: {}", crate::engine::truncate(why, 300)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A container as the answer sees it.
struct Shown<'j, 'w> {
    judged: &'j Judgement<'w>,
    c: &'j ContainerJudgement<'w>,
}

impl Judged for Shown<'_, '_> {
    fn image(&self) -> &str {
        &self.c.image
    }

    fn action(&self) -> Action {
        self.c.ruling.action()
    }

    fn violations(&self) -> usize {
        match &self.c.ruling {
            Ruling::Written(d) => d.violations.len(),
            Ruling::Pending(v) => v.hits.len(),
        }
    }

    fn violation_action(&self, i: usize) -> Action {
        match &self.c.ruling {
            Ruling::Written(d) => d.violations[i].action,
            Ruling::Pending(v) => v.hits[i].action,
        }
    }

    fn violation(&self, i: usize) -> Cow<'_, Violation> {
        self.judged.violation(self.c, i)
    }
}

/// The engine's view of a looked-up target.
fn engine_target(t: &LookupTarget) -> TargetEvidence<'_> {
    TargetEvidence {
        digest: &t.digest,
        evidence: match &t.findings {
            Ok(TargetFindings::Artifacts(set)) => Evidence::Artifacts(set),
            Ok(TargetFindings::NotScanned) => NO_FINDINGS,
            Ok(TargetFindings::Malformed(d)) => Evidence::Failed {
                class: FailureClass::MalformedFindings,
                detail: d,
            },
            Err(f) => Evidence::Failed {
                class: f.class,
                detail: &f.detail,
            },
        },
    }
}

/// Evidence of nothing attached.
const NO_FINDINGS: Evidence<'static> = Evidence::Failed {
    class: FailureClass::NoFindings,
    detail: "",
};

/// Where to look an image up, with these credentials.
fn target(snapshot: &Snapshot, image: &ImageRef, credentials: Credentials) -> Target {
    Target {
        label: registry_label(snapshot, image.registry_host()),
        registry: image.registry_host().clone(),
        repository: image.repository().to_owned(),
        credentials,
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
fn shown_image(c: &GatedContainer) -> Cow<'_, str> {
    match c.kind {
        ContainerKind::ImageVolume => Cow::Owned(format!("{} ({})", shown(&c.image), c.name)),
        _ => shown(&c.image),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code fails loudly")]

    use super::*;

    #[test]
    fn parsed_references_are_the_parse_and_stay_within_their_bytes() {
        let refs = ParsedReferences::new(64 * 1024);
        for text in [
            "nginx",
            "Registry.Example.com:443/team/app:1.0",
            "0x7f.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let fresh = ImageRef::parse(text).unwrap();
            // Parsed, then served from the cache: the same reference.
            assert_eq!(*refs.parse(text).unwrap(), fresh, "{text}");
            assert_eq!(*refs.parse(text).unwrap(), fresh, "{text}");
        }
        // Errors are the parser's, every time, and not kept.
        let e = ImageRef::parse("team/App:1").unwrap_err().to_string();
        assert_eq!(refs.parse("team/App:1").unwrap_err(), e);
        assert_eq!(refs.parse("team/App:1").unwrap_err(), e);
        refs.0.run_pending_tasks();
        assert_eq!(refs.0.entry_count(), 3);
        // A flood of long, distinct names stays within the bound.
        let long = "a".repeat(200);
        for i in 0..5_000 {
            refs.parse(&format!("registry.example.com/{long}:{i}"))
                .unwrap();
        }
        refs.0.run_pending_tasks();
        assert!(
            refs.0.weighted_size() <= 64 * 1024,
            "{}",
            refs.0.weighted_size()
        );
    }
}
