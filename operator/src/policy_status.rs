//! Each SecurityArtifactPolicy's `Ready` condition and `observedGeneration`,
//! for what CEL cannot check: registry patterns parse as host globs, ages
//! parse, the rule compiles in the gating engine (`portcullis-core`, the same
//! code the webhook runs). A rule that does not compile shows `Ready=False`
//! with reason `Invalid` and the engine's message; the webhook meanwhile
//! applies it per `--invalid-rule` (fail closed by default).
//!
//! Writes happen only when something changed (generation, verdict or
//! message), so a steady cluster costs no writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use portcullis_core::engine::CompiledRule;
use portcullis_crds::SecurityArtifactPolicy;

use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::ready::{Current, Verdict, write_ready};

const CONTROLLER: &str = "securityartifactpolicy";

/// Its own field manager: the status fields written here are owned apart
/// from anything the RuleSource controller applies to the same objects.
pub const STATUS_MANAGER: &str = "portcullis-operator-policy-status";

/// Shared by every reconcile.
pub struct PolicyStatusContext {
    /// API client.
    pub client: kube::Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Only the leader writes.
    pub leader: Leadership,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStatusError {
    /// The API server refused the status write.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The verdict for one policy.
pub fn verdict(policy: &SecurityArtifactPolicy) -> Verdict {
    match CompiledRule::compile(&policy.name_any(), &policy.spec) {
        Ok(_) => Verdict {
            ready: true,
            reason: "Valid",
            message: "the rule compiles and is in force".to_owned(),
        },
        Err(e) => Verdict {
            ready: false,
            reason: "Invalid",
            message: e.problem.to_string(),
        },
    }
}

/// Reconciles one policy's status.
pub async fn reconcile(
    policy: Arc<SecurityArtifactPolicy>,
    ctx: Arc<PolicyStatusContext>,
) -> Result<Action, PolicyStatusError> {
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let started = Instant::now();
    let v = verdict(&policy);
    let status = policy.status.clone().unwrap_or_default();
    let current = Current {
        generation: policy.metadata.generation,
        observed: status.observed_generation,
        conditions: &status.conditions,
    };
    let wrote = write_ready::<SecurityArtifactPolicy>(
        &ctx.client,
        &policy.name_any(),
        current,
        &v,
        STATUS_MANAGER,
    )
    .await?;
    if wrote && !v.ready {
        ctx.metrics.failed(CONTROLLER, v.reason);
    }
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    Ok(Action::await_change())
}

/// Retries failed writes after half a minute.
pub fn error_policy(
    policy: Arc<SecurityArtifactPolicy>,
    error: &PolicyStatusError,
    ctx: Arc<PolicyStatusContext>,
) -> Action {
    ctx.metrics.failed(CONTROLLER, "APIError");
    tracing::warn!(policy = %policy.name_any(), error = %error, "could not write the policy's status");
    Action::requeue(Duration::from_secs(30))
}
