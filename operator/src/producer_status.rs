//! Each TrustedProducer's `Ready` condition: its keys (inline or from the
//! Secrets named), its keyless identities and its trusted root load with the
//! same code the webhook verifies with (`portcullis_core::trust::Producer`).
//! A producer that does not load is left out by the webhook, so rules naming
//! it see no verified evidence from it: the reason shows here.
//!
//! Rechecked every five minutes, as Secrets and ConfigMaps change without
//! the TrustedProducer changing; written only when the verdict changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::ready::{Current, Verdict, write_ready};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use portcullis_core::trust::Producer;
use portcullis_crds::TrustedProducer;
use portcullis_crds::trusted_producer::ready_reason;

const CONTROLLER: &str = "trustedproducer";

/// The field manager of this status.
pub const STATUS_MANAGER: &str = "portcullis-operator-producer-status";

/// Shared by every reconcile.
pub struct ProducerStatusContext {
    /// API client.
    pub client: kube::Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Only the leader writes.
    pub leader: Leadership,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ProducerStatusError {
    /// The API server refused a read or the status write.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Loads the producer as the webhook will.
pub async fn verdict(
    client: &kube::Client,
    producer: &TrustedProducer,
) -> Result<Verdict, kube::Error> {
    let mut secrets: BTreeMap<(String, String), Option<Secret>> = BTreeMap::new();
    for r in producer
        .spec
        .public_keys
        .iter()
        .filter_map(|k| k.secret_ref.as_ref())
    {
        let key = (r.namespace.clone(), r.name.clone());
        if let std::collections::btree_map::Entry::Vacant(slot) = secrets.entry(key) {
            let api: Api<Secret> = Api::namespaced(client.clone(), &r.namespace);
            slot.insert(api.get_opt(&r.name).await?);
        }
    }
    let root = match &producer.spec.trusted_root_ref {
        Some(r) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &r.namespace);
            api.get_opt(&r.name)
                .await?
                .and_then(|c| c.data)
                .and_then(|d| d.get(&r.key).cloned())
        }
        None => None,
    };
    let secret = |r: &portcullis_crds::PublicKeySecretRef| {
        let s = secrets
            .get(&(r.namespace.clone(), r.name.clone()))?
            .as_ref()?;
        if let Some(v) = s.data.as_ref().and_then(|d| d.get(&r.key)) {
            return String::from_utf8(v.0.clone()).ok();
        }
        s.string_data.as_ref().and_then(|d| d.get(&r.key)).cloned()
    };
    Ok(
        match Producer::load(&producer.name_any(), &producer.spec, secret, |_| {
            root.clone()
        }) {
            Ok(p) => Verdict {
                ready: true,
                reason: ready_reason::LOADED,
                message: format!(
                    "{} key(s) and {} keyless identit(ies) loaded",
                    p.keys().len(),
                    p.keyless().len()
                ),
            },
            Err(e) => Verdict {
                ready: false,
                reason: e.reason(),
                message: e.to_string(),
            },
        },
    )
}

/// Reconciles one TrustedProducer's status.
pub async fn reconcile(
    producer: Arc<TrustedProducer>,
    ctx: Arc<ProducerStatusContext>,
) -> Result<Action, ProducerStatusError> {
    let every = Action::requeue(Duration::from_secs(300));
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let started = Instant::now();
    let v = verdict(&ctx.client, &producer).await?;
    let status = producer.status.clone().unwrap_or_default();
    let current = Current {
        generation: producer.metadata.generation,
        observed: status.observed_generation,
        conditions: &status.conditions,
    };
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let wrote = write_ready::<TrustedProducer>(
        &ctx.client,
        &producer.name_any(),
        current,
        &v,
        STATUS_MANAGER,
    )
    .await?;
    if wrote && !v.ready {
        ctx.metrics.failed(CONTROLLER, v.reason);
    }
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    Ok(every)
}

/// Retries failures after half a minute.
pub fn error_policy(
    producer: Arc<TrustedProducer>,
    error: &ProducerStatusError,
    ctx: Arc<ProducerStatusContext>,
) -> Action {
    ctx.metrics.failed(CONTROLLER, "APIError");
    tracing::warn!(producer = %producer.name_any(), error = %error, "could not check the TrustedProducer");
    Action::requeue(Duration::from_secs(30))
}
