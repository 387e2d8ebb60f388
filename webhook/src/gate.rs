//! One admission request, end to end: which containers, their images'
//! findings (looked up concurrently, bounded by the deadline), the engine's
//! decision per image and platform, the answer, and the monitoring trail
//! (log line, metrics, Event).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::runtime::events::{Event, EventType, Recorder};

use crate::admission::{Workload, workload_of};
use crate::engine::{
    Action, AdmissionDecision, ContainerDecision, Decision, Evidence, FailureActions, FailureClass,
    Subject, aggregate,
};
use crate::metrics::Metrics;
use crate::policies::{PolicyStore, Snapshot};
use crate::reference::ImageRef;
use crate::registry::Target;
use crate::registry::access::{CredentialResolver, PodIdentity};
use crate::registry::lookup::{ImageEvidence, ImageLookup, TargetFindings};

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
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder, in a cluster.
    pub recorder: Option<Recorder>,
    /// Parsed image references: parsing runs the distribution grammar's
    /// regular expression, the costliest step of a warm admission.
    pub references: moka::sync::Cache<String, Result<ImageRef, String>>,
}

/// A cache of parsed references of the usual size.
pub fn reference_cache() -> moka::sync::Cache<String, Result<ImageRef, String>> {
    moka::sync::Cache::new(50_000)
}

/// The decision for one container, with what the trail needs.
#[derive(Debug, Clone)]
pub struct ContainerOutcome {
    /// Container name.
    pub container: String,
    /// Image as written.
    pub image: String,
    /// Digest judged (the platform's, for an index).
    pub digest: Option<String>,
    /// The engine's decision.
    pub decision: Decision,
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

impl Gate {
    /// Answers an AdmissionRequest.
    pub async fn review(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let started = Instant::now();
        let outcome = match workload_of(req) {
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
        let operation = match req.operation {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        };
        self.metrics.admission(
            &req.kind.kind,
            operation,
            outcome.decision.action.as_str(),
            started.elapsed(),
        );
        self.trail(req, &outcome);
        let mut resp = AdmissionResponse::from(req);
        let d = outcome.decision;
        if !d.allowed {
            resp = resp.deny(d.message.unwrap_or_else(|| "portcullis: denied".into()));
            resp.result.code = 403;
            resp.result.reason = "Forbidden".into();
        }
        if !d.warnings.is_empty() {
            resp.warnings = Some(d.warnings);
        }
        resp
    }

    /// Judges the containers of `workload`, answering by the deadline.
    pub async fn judge(&self, workload: Workload, started: Instant) -> Outcome {
        let snapshot = self.store.snapshot();
        let now = Timestamp::now();
        // One lookup per distinct image that any rule cares about.
        let mut parsed: HashMap<&str, Result<ImageRef, String>> = HashMap::new();
        for c in &workload.containers {
            parsed.entry(c.image.as_str()).or_insert_with(|| {
                self.references.get_with_by_ref(&c.image, || {
                    ImageRef::parse(&c.image).map_err(|e| e.to_string())
                })
            });
        }
        let mut pending = Vec::new();
        for (image, r) in &parsed {
            let Ok(image_ref) = r else { continue };
            let wanted = workload
                .containers
                .iter()
                .filter(|c| c.image == *image)
                .any(|c| {
                    snapshot
                        .policies
                        .any_applies(&subject(&workload, &c.name, image_ref, None), now)
                });
            if wanted {
                pending.push((
                    (*image).to_owned(),
                    self.lookup_image(&snapshot, &workload, image_ref.clone()),
                ));
            }
        }
        // Cached answers complete on the first poll; only lookups that must
        // wait on a registry become tasks (and keep filling the cache if the
        // deadline passes).
        let mut evidence: HashMap<String, ImageEvidence> = HashMap::new();
        let mut waiting = Vec::new();
        for (image, mut lookup) in pending {
            match futures::FutureExt::now_or_never(&mut lookup) {
                Some(ev) => {
                    evidence.insert(image, ev);
                }
                None => waiting.push((image, tokio::spawn(lookup))),
            }
        }
        // The tasks run concurrently; awaiting them in turn against one
        // absolute deadline waits no longer than the slowest.
        let deadline = tokio::time::Instant::from_std(started + self.deadline);
        for (image, handle) in waiting {
            let ev = match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(ev)) => ev,
                Ok(Err(e)) => ImageEvidence::failed(
                    FailureClass::RegistryUnavailable,
                    format!("lookup failed: {e}"),
                ),
                Err(_) => ImageEvidence::failed(
                    FailureClass::RegistryUnavailable,
                    format!(
                        "no answer from the registry within the {} ms deadline",
                        self.deadline.as_millis()
                    ),
                ),
            };
            evidence.insert(image, ev);
        }
        let containers: Vec<ContainerOutcome> = workload
            .containers
            .iter()
            .map(|c| {
                let image_ref = match &parsed[c.image.as_str()] {
                    Ok(r) => r,
                    Err(e) => return invalid_reference(&snapshot, c, e, &self.failures),
                };
                judge_container(
                    &snapshot,
                    &workload,
                    &c.name,
                    &c.image,
                    image_ref,
                    evidence.get(&c.image),
                    &self.failures,
                    now,
                )
            })
            .collect();
        let decisions: Vec<ContainerDecision> = containers
            .iter()
            .map(|c| ContainerDecision {
                container: c.container.clone(),
                image: c.image.clone(),
                decision: c.decision.clone(),
            })
            .collect();
        Outcome {
            decision: aggregate(&decisions),
            containers,
            workload: Some(workload),
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
            let creds = match credentials
                .credentials(&snapshot.access, image.registry(), pod)
                .await
            {
                Ok(c) => c,
                Err(f) => return ImageEvidence::failed(f.class, f.detail),
            };
            let target = Target {
                registry: image.registry().to_owned(),
                repository: image.repository().to_owned(),
                credentials: creds,
            };
            lookup.lookup(&image, target).await
        })
    }

    /// Log line, metrics and Event for each audited or denied container.
    fn trail(&self, req: &AdmissionRequest<DynamicObject>, outcome: &Outcome) {
        let Some(w) = &outcome.workload else { return };
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
                rule,
                violation = %v.message,
                image = %c.image,
                digest = c.digest.as_deref().unwrap_or("-"),
                namespace = %w.namespace,
                kind = %w.kind,
                name = %w.name,
                container = %c.container,
                reason = v.reason.as_str(),
                dry_run = req.dry_run,
                "image gated"
            );
            self.metrics
                .decision(c.decision.action.as_str(), rule, v.reason.as_str());
        }
        if let Some(recorder) = &self.recorder
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
                name: Some(w.name.clone()),
                ..ObjectReference::default()
            };
            let recorder = recorder.clone();
            let event = Event {
                type_,
                reason: reason.into(),
                note: note.map(|n| crate::engine::truncate(&n, 1024)),
                action: "Admission".into(),
                secondary: None,
            };
            tokio::spawn(async move {
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::warn!(error = %e, "could not publish the gating Event");
                }
            });
        }
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
    image: &'a ImageRef,
    digest: Option<&'a str>,
) -> Subject<'a> {
    Subject {
        namespace: &w.namespace,
        kind: &w.kind,
        workload: w.workload.as_deref(),
        pod_name: w.pod_name.as_deref(),
        labels: &w.labels,
        container,
        image,
        digest,
    }
}

fn invalid_reference(
    snapshot: &Snapshot,
    c: &crate::admission::GatedContainer,
    error: &str,
    failures: &FailureActions,
) -> ContainerOutcome {
    // The engine needs a parsed reference for scope; an unparseable one is
    // judged as the failure class alone, against every rule.
    let action = if snapshot.policies.rules().is_empty() {
        Action::Allow
    } else {
        failures.get(FailureClass::InvalidReference)
    };
    let violations = if action == Action::Allow {
        Vec::new()
    } else {
        vec![crate::engine::Violation {
            rule: None,
            priority: i32::MAX,
            action,
            reason: crate::engine::ReasonCode::Failure(FailureClass::InvalidReference),
            stage: crate::engine::Stage::Failure,
            message: format!("The image reference is invalid: {error}"),
            cves: Vec::new(),
        }]
    };
    ContainerOutcome {
        container: c.name.clone(),
        image: c.image.clone(),
        digest: None,
        decision: Decision {
            action,
            violations,
            applicable_rules: snapshot.policies.rules().len(),
        },
    }
}

/// The strictest decision over the image's targets (all platforms must pass).
#[allow(clippy::too_many_arguments)]
fn judge_container(
    snapshot: &Snapshot,
    w: &Workload,
    container: &str,
    image: &str,
    image_ref: &ImageRef,
    evidence: Option<&ImageEvidence>,
    failures: &FailureActions,
    now: Timestamp,
) -> ContainerOutcome {
    let policies = &snapshot.policies;
    // The image judged without findings, for this reason.
    let without_findings = |class: FailureClass, detail: &str| ContainerOutcome {
        container: container.into(),
        image: image.into(),
        digest: None,
        decision: policies.evaluate(
            &subject(w, container, image_ref, None),
            Evidence::Failed { class, detail },
            failures,
            now,
        ),
    };
    let Some(evidence) = evidence else {
        // No rule applies: nothing was looked up.
        return without_findings(FailureClass::NoFindings, "");
    };
    let digest = match &evidence.digest {
        Ok(d) => d.clone(),
        Err(f) => return without_findings(f.class, &f.detail),
    };
    let mut best: Option<(Decision, Option<&str>, &str)> = None;
    for t in &evidence.targets {
        let ev = match &t.findings {
            Ok(TargetFindings::Scanned { summary, .. }) => Evidence::Scanned(summary),
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
        };
        let decision = policies.evaluate(
            &subject(w, container, image_ref, Some(&t.digest)),
            ev,
            failures,
            now,
        );
        let stricter = best
            .as_ref()
            .is_none_or(|(b, _, _)| decision.action > b.action);
        if stricter {
            best = Some((decision, t.platform.as_deref(), &t.digest));
        }
    }
    match best {
        Some((decision, platform, d)) => ContainerOutcome {
            container: container.into(),
            image: match platform {
                Some(p) if decision.action != Action::Allow => format!("{image} ({p})"),
                _ => image.into(),
            },
            digest: Some(d.to_owned()),
            decision,
        },
        None => ContainerOutcome {
            digest: Some(digest),
            ..without_findings(FailureClass::NoFindings, "")
        },
    }
}
