//! Federated identity for the webhook (the RegistryAccess controller, DESIGN
//! §5): annotate the webhook's ServiceAccount for the configured cloud, make
//! sure Azure's pod label is on the webhook's pods, and publish on the
//! RegistryAccess status exactly what must be registered in the cloud: the
//! cluster's OIDC issuer (from its discovery document), the subject and the
//! audience.
//!
//! Each RegistryAccess writes with its own server-side-apply field manager
//! (`portcullis-operator.registryaccess.<name>`), so it owns exactly the
//! annotations and label it set: a finalizer releases them when the object
//! is deleted (or no longer federated), and what another RegistryAccess set
//! with the same value stays. Two RegistryAccesses that want different
//! values for one annotation (one ServiceAccount has one identity per cloud)
//! are a `Conflict` on both, and neither overwrites the other; applies are
//! not forced, so the API server refuses an overwrite of anyone else's value
//! too.
//!
//! `Ready=True` means the operator's part is done: the issuer was read and
//! the annotations applied. Whether the cloud accepts the identity shows in
//! the webhook's `portcullis_registry_access_usable` metric at its first
//! successful token exchange.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use portcullis_crds::{RegistryAccess, RegistryAuthType};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::rule_source::{MANAGER, condition};

const CONTROLLER: &str = "registryaccess";

/// The finalizer that releases what a RegistryAccess set.
pub const FINALIZER: &str = "portcullis.dev/federated-identity";

/// Azure's pod label (on the webhook Deployment's pod template).
pub const AZURE_POD_LABEL: &str = "azure.workload.identity/use";

const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The webhook workload whose identity is federated.
#[derive(Debug, Clone)]
pub struct WebhookIdentity {
    /// Namespace.
    pub namespace: String,
    /// ServiceAccount of the webhook pods.
    pub service_account: String,
    /// Deployment of the webhook (for Azure's pod label).
    pub deployment: String,
}

/// Shared by every reconcile.
pub struct IdentityContext {
    /// API client.
    pub client: kube::Client,
    /// The webhook's identity.
    pub webhook: WebhookIdentity,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Only the leader writes.
    pub leader: Leadership,
    /// Every RegistryAccess (the controller's store), to find conflicts.
    pub all: Store<RegistryAccess>,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The settings block for the auth type is missing.
    #[error("auth type {0} needs its settings block")]
    MissingSettings(&'static str),
    /// The cluster's OIDC discovery document could not be read.
    #[error("reading the cluster's OIDC discovery document: {0}")]
    Issuer(String),
    /// Someone else's value is on the ServiceAccount or Deployment.
    #[error("{0}")]
    Conflict(String),
    /// The API server refused a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// This replica stopped leading mid-reconcile; nothing more is written.
    #[error("leadership lost")]
    LeadershipLost,
}

impl IdentityError {
    /// Condition reason and metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingSettings(_) => "MissingSettings",
            Self::Issuer(_) => "IssuerUnavailable",
            Self::Conflict(_) => "Conflict",
            Self::Kube(_) => "APIError",
            Self::Finalizer(_) => "FinalizerFailed",
            Self::LeadershipLost => "LeadershipLost",
        }
    }
}

/// What the cloud needs for one auth type.
struct Federation {
    annotations: BTreeMap<String, String>,
    audience: String,
    pod_label: bool,
}

fn federation(access: &RegistryAccess) -> Result<Option<Federation>, IdentityError> {
    let auth = &access.spec.auth;
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    Ok(Some(match auth.auth_type {
        RegistryAuthType::AzureWorkloadIdentity => {
            let wi = auth
                .azure_workload_identity
                .as_ref()
                .ok_or(IdentityError::MissingSettings("AzureWorkloadIdentity"))?;
            Federation {
                annotations: map(&[
                    ("azure.workload.identity/client-id", &wi.client_id),
                    ("azure.workload.identity/tenant-id", &wi.tenant_id),
                ]),
                audience: AZURE_AUDIENCE.into(),
                pod_label: true,
            }
        }
        RegistryAuthType::AwsWebIdentity => {
            let aws = auth
                .aws_web_identity
                .as_ref()
                .ok_or(IdentityError::MissingSettings("AwsWebIdentity"))?;
            Federation {
                annotations: map(&[("eks.amazonaws.com/role-arn", &aws.role_arn)]),
                audience: "sts.amazonaws.com".into(),
                pod_label: false,
            }
        }
        RegistryAuthType::GcpWorkloadIdentity => {
            let gcp = auth
                .gcp_workload_identity
                .as_ref()
                .ok_or(IdentityError::MissingSettings("GcpWorkloadIdentity"))?;
            Federation {
                annotations: map(&[("iam.gke.io/gcp-service-account", &gcp.service_account)]),
                // Federation: the token's audience is the provider; on GKE
                // the pool's own audience form.
                audience: gcp.workload_identity_provider.as_ref().map_or_else(
                    || "iam.googleapis.com".to_owned(),
                    |p| {
                        if p.starts_with("//") {
                            p.clone()
                        } else {
                            format!("//iam.googleapis.com/{p}")
                        }
                    },
                ),
                pod_label: false,
            }
        }
        RegistryAuthType::Anonymous
        | RegistryAuthType::PullSecrets
        | RegistryAuthType::BasicSecret => return Ok(None),
    }))
}

/// The server-side-apply field manager of one RegistryAccess (at most 128
/// characters, as the API server requires).
pub fn field_manager(access: &str) -> String {
    let manager = format!("{MANAGER}.registryaccess.{access}");
    if manager.len() <= 128 {
        return manager;
    }
    let hash: String = Sha256::digest(access.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{MANAGER}.registryaccess.{}-{hash}",
        access.get(..80).unwrap_or(access)
    )
}

/// The other RegistryAccesses (not being deleted) that want another value
/// for one of `wanted`'s annotations, with what they want.
fn conflicts(
    me: &RegistryAccess,
    wanted: &BTreeMap<String, String>,
    all: &Store<RegistryAccess>,
) -> Vec<String> {
    let mut found: Vec<String> = all
        .state()
        .iter()
        .filter(|o| o.name_any() != me.name_any() && o.metadata.deletion_timestamp.is_none())
        .filter_map(|o| {
            let theirs = federation(o).ok().flatten()?;
            let clashes: Vec<String> = wanted
                .iter()
                .filter_map(|(k, v)| {
                    let other = theirs.annotations.get(k)?;
                    (other != v).then(|| format!("{k}={other}"))
                })
                .collect();
            (!clashes.is_empty()).then(|| {
                format!(
                    "RegistryAccess {} wants {}",
                    o.name_any(),
                    clashes.join(", ")
                )
            })
        })
        .collect();
    found.sort();
    found
}

/// The issuer of the cluster's ServiceAccount tokens.
async fn issuer(client: &kube::Client) -> Result<String, IdentityError> {
    let req = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| IdentityError::Issuer(e.to_string()))?;
    let doc: Value = client
        .request(req)
        .await
        .map_err(|e| IdentityError::Issuer(e.to_string()))?;
    doc.get("issuer")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| IdentityError::Issuer("the document has no issuer".into()))
}

/// Reconciles one RegistryAccess: adds the finalizer, configures, or (when
/// it is being deleted) releases what it set.
pub async fn reconcile(
    access: Arc<RegistryAccess>,
    ctx: Arc<IdentityContext>,
) -> Result<Action, IdentityError> {
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let started = Instant::now();
    let api = Api::<RegistryAccess>::all(ctx.client.clone());
    let result = match finalizer(&api, FINALIZER, access.clone(), |event| async {
        match event {
            finalizer::Event::Apply(a) => apply(&a, &ctx).await,
            finalizer::Event::Cleanup(a) => cleanup(&a, &ctx).await,
        }
    })
    .await
    {
        Ok(action) => Ok(action),
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => Err(e),
        // RBAC without `patch` on registryaccesses (manifests older than the
        // finalizer): configure all the same, but what it sets cannot be
        // released on deletion, and the log says so.
        Err(finalizer::Error::AddFinalizer(kube::Error::Api(s))) if s.code == 403 => {
            tracing::warn!(registry_access = %access.name_any(), error = %s.message, "cannot add the finalizer (RBAC: patch on registryaccesses); its annotations will not be removed when it is deleted");
            apply(&access, &ctx).await
        }
        Err(other) => Err(IdentityError::Finalizer(other.to_string())),
    };
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    if let Err(e) = &result {
        ctx.metrics.failed(CONTROLLER, e.reason());
    }
    result
}

/// What a reconcile found, for the status.
enum Outcome {
    Configured(Value),
    NoFederation,
    Conflict(Vec<String>),
}

async fn apply(access: &RegistryAccess, ctx: &IdentityContext) -> Result<Action, IdentityError> {
    let result = configure(access, ctx).await;
    let generation = access.metadata.generation;
    let previous = access
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let (ready, conflict, credential) = match &result {
        Ok(Outcome::Configured(credential)) => (
            condition(
                "Ready",
                true,
                "Configured",
                "annotations applied; register this federated credential in the cloud (the webhook's first token exchange shows in portcullis_registry_access_usable)",
                generation,
                &previous,
            ),
            None,
            Some(credential.clone()),
        ),
        Ok(Outcome::NoFederation) => (
            condition(
                "Ready",
                true,
                "NoFederation",
                "this auth type needs no federated identity",
                generation,
                &previous,
            ),
            None,
            None,
        ),
        Ok(Outcome::Conflict(with)) => {
            let message = format!(
                "the webhook's ServiceAccount carries one identity per cloud: {}; nothing was changed",
                with.join("; ")
            );
            (
                condition("Ready", false, "Conflict", &message, generation, &previous),
                Some(message),
                None,
            )
        }
        Err(e) => (
            condition(
                "Ready",
                false,
                e.reason(),
                &e.to_string(),
                generation,
                &previous,
            ),
            matches!(e, IdentityError::Conflict(_)).then(|| e.to_string()),
            None,
        ),
    };
    let conflict = match conflict {
        Some(message) => condition(
            "Conflict", true, "Conflict", &message, generation, &previous,
        ),
        None => condition(
            "Conflict",
            false,
            "NoConflict",
            "no other RegistryAccess wants another identity on the ServiceAccount",
            generation,
            &previous,
        ),
    };
    let status = json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "RegistryAccess",
        "status": {
            "observedGeneration": generation,
            "federatedCredential": credential,
            "conditions": [ready, conflict],
        }
    });
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    Api::<RegistryAccess>::all(ctx.client.clone())
        .patch_status(
            &access.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(status),
        )
        .await?;
    match result {
        Ok(Outcome::Conflict(_)) => Ok(Action::requeue(Duration::from_secs(300))),
        Ok(_) => Ok(Action::requeue(Duration::from_secs(3600))),
        Err(e) => Err(e),
    }
}

/// The ServiceAccount with `annotations`, applied by this RegistryAccess's
/// field manager: what it set before and does not set now is removed.
fn service_account(w: &WebhookIdentity, annotations: &BTreeMap<String, String>) -> Value {
    let mut metadata = json!({"name": w.service_account, "namespace": w.namespace});
    if !annotations.is_empty() {
        metadata["annotations"] = json!(annotations);
    }
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata})
}

/// The Deployment with (or without) Azure's pod label, likewise.
fn deployment(w: &WebhookIdentity, pod_label: bool) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": w.deployment, "namespace": w.namespace},
    });
    if pod_label {
        d["spec"] = json!({"template": {"metadata": {"labels": {AZURE_POD_LABEL: "true"}}}});
    }
    d
}

/// Whether this RegistryAccess set Azure's pod label before (its last
/// published credential was Azure's).
fn had_pod_label(access: &RegistryAccess) -> bool {
    access
        .status
        .as_ref()
        .and_then(|s| s.federated_credential.as_ref())
        .is_some_and(|c| c.audience == AZURE_AUDIENCE)
}

/// A refused overwrite: another manager owns another value.
fn conflict_or(e: kube::Error, what: &str) -> IdentityError {
    match &e {
        kube::Error::Api(s) if s.code == 409 => IdentityError::Conflict(format!(
            "{what} holds another value, set by someone else: {}",
            s.message
        )),
        _ => IdentityError::Kube(e),
    }
}

async fn configure(
    access: &RegistryAccess,
    ctx: &IdentityContext,
) -> Result<Outcome, IdentityError> {
    let w = &ctx.webhook;
    let manager = field_manager(&access.name_any());
    // Not forced: the API server refuses to overwrite a value another
    // manager set.
    let params = PatchParams::apply(&manager);
    let sa_api = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &w.namespace);
    let deploy_api = Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace);
    let Some(fed) = federation(access)? else {
        // No longer federated: release what it set, if it set anything.
        if access
            .status
            .as_ref()
            .is_some_and(|s| s.federated_credential.is_some())
        {
            release(access, ctx).await?;
        }
        return Ok(Outcome::NoFederation);
    };
    let with = conflicts(access, &fed.annotations, &ctx.all);
    if !with.is_empty() {
        return Ok(Outcome::Conflict(with));
    }
    let issuer = issuer(&ctx.client).await?;
    if !ctx.leader.is_leader() {
        return Err(IdentityError::LeadershipLost);
    }
    sa_api
        .patch(
            &w.service_account,
            &params,
            &Patch::Apply(service_account(w, &fed.annotations)),
        )
        .await
        .map_err(|e| conflict_or(e, "the webhook's ServiceAccount"))?;
    if fed.pod_label || had_pod_label(access) {
        deploy_api
            .patch(
                &w.deployment,
                &params,
                &Patch::Apply(deployment(w, fed.pod_label)),
            )
            .await
            .map_err(|e| conflict_or(e, "the webhook's Deployment"))?;
    }
    Ok(Outcome::Configured(json!({
        "issuer": issuer,
        "subject": format!("system:serviceaccount:{}:{}", w.namespace, w.service_account),
        "audience": fed.audience,
    })))
}

/// Releases everything this RegistryAccess's field manager set: an empty
/// apply removes the fields it alone owned and keeps those another
/// RegistryAccess set too. Missing objects have nothing to release.
async fn release(access: &RegistryAccess, ctx: &IdentityContext) -> Result<(), IdentityError> {
    let w = &ctx.webhook;
    let params = PatchParams::apply(&field_manager(&access.name_any()));
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    match Api::<ServiceAccount>::namespaced(ctx.client.clone(), &w.namespace)
        .patch(
            &w.service_account,
            &params,
            &Patch::Apply(service_account(w, &BTreeMap::new())),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if gone(&e) => {}
        Err(e) => return Err(e.into()),
    }
    match Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace)
        .patch(&w.deployment, &params, &Patch::Apply(deployment(w, false)))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn cleanup(access: &RegistryAccess, ctx: &IdentityContext) -> Result<Action, IdentityError> {
    if !ctx.leader.is_leader() {
        return Err(IdentityError::LeadershipLost);
    }
    release(access, ctx).await?;
    tracing::info!(registry_access = %access.name_any(), "federated identity released");
    Ok(Action::await_change())
}

/// Retries failures after a minute.
pub fn error_policy(
    access: Arc<RegistryAccess>,
    error: &IdentityError,
    _ctx: Arc<IdentityContext>,
) -> Action {
    tracing::warn!(registry_access = %access.name_any(), reason = error.reason(), error = %error, "federated identity not configured");
    Action::requeue(Duration::from_secs(60))
}
