//! Federated identity for the webhook (the RegistryAccess controller, DESIGN
//! §5): annotate the webhook's ServiceAccount for the configured cloud, make
//! sure Azure's pod label is on the webhook's pods, and publish on the
//! RegistryAccess status exactly what must be registered in the cloud: the
//! cluster's OIDC issuer (from its discovery document), the subject and the
//! audience.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use portcullis_crds::{RegistryAccess, RegistryAuthType};
use serde_json::{Value, json};

use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::rule_source::{MANAGER, condition};

const CONTROLLER: &str = "registryaccess";

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
    /// The API server refused a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl IdentityError {
    /// Condition reason and metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingSettings(_) => "MissingSettings",
            Self::Issuer(_) => "IssuerUnavailable",
            Self::Kube(_) => "APIError",
        }
    }
}

/// What the cloud needs for one auth type.
struct Federation {
    annotations: Value,
    audience: &'static str,
    pod_label: bool,
}

fn federation(access: &RegistryAccess) -> Result<Option<Federation>, IdentityError> {
    let auth = &access.spec.auth;
    Ok(Some(match auth.auth_type {
        RegistryAuthType::AzureWorkloadIdentity => {
            let wi = auth
                .azure_workload_identity
                .as_ref()
                .ok_or(IdentityError::MissingSettings("AzureWorkloadIdentity"))?;
            Federation {
                annotations: json!({"azure.workload.identity/client-id": wi.client_id, "azure.workload.identity/tenant-id": wi.tenant_id}),
                audience: "api://AzureADTokenExchange",
                pod_label: true,
            }
        }
        RegistryAuthType::AwsWebIdentity => {
            let aws = auth
                .aws_web_identity
                .as_ref()
                .ok_or(IdentityError::MissingSettings("AwsWebIdentity"))?;
            Federation {
                annotations: json!({"eks.amazonaws.com/role-arn": aws.role_arn}),
                audience: "sts.amazonaws.com",
                pod_label: false,
            }
        }
        RegistryAuthType::GcpWorkloadIdentity => {
            let gcp = auth
                .gcp_workload_identity
                .as_ref()
                .ok_or(IdentityError::MissingSettings("GcpWorkloadIdentity"))?;
            Federation {
                annotations: json!({"iam.gke.io/gcp-service-account": gcp.service_account}),
                // GKE federates its own issuer; this is the pool's audience form.
                audience: "iam.googleapis.com",
                pod_label: false,
            }
        }
        RegistryAuthType::Anonymous
        | RegistryAuthType::PullSecrets
        | RegistryAuthType::BasicSecret => return Ok(None),
    }))
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

/// Reconciles one RegistryAccess.
pub async fn reconcile(
    access: Arc<RegistryAccess>,
    ctx: Arc<IdentityContext>,
) -> Result<Action, IdentityError> {
    if !ctx.leader.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let started = Instant::now();
    let result = configure(&access, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    let (ok, reason, message, credential) = match &result {
        Ok(Some(credential)) => (
            true,
            "Configured",
            "register this federated credential in the cloud".to_owned(),
            Some(credential.clone()),
        ),
        Ok(None) => (
            true,
            "NoFederation",
            "this auth type needs no federated identity".to_owned(),
            None,
        ),
        Err(e) => {
            ctx.metrics.failed(CONTROLLER, e.reason());
            (false, e.reason(), e.to_string(), None)
        }
    };
    let previous = access
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = access.metadata.generation;
    let status = json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "RegistryAccess",
        "status": {
            "observedGeneration": generation,
            "federatedCredential": credential,
            "conditions": [condition("Ready", ok, reason, &message, generation, &previous)],
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
    result.map(|_| Action::requeue(Duration::from_secs(3600)))
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

async fn configure(
    access: &RegistryAccess,
    ctx: &IdentityContext,
) -> Result<Option<Value>, IdentityError> {
    let Some(fed) = federation(access)? else {
        return Ok(None);
    };
    let issuer = issuer(&ctx.client).await?;
    let w = &ctx.webhook;
    // Only the annotations are owned by this field manager; the rest of the
    // ServiceAccount is left to whoever installed it.
    let sa = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": w.service_account, "namespace": w.namespace, "annotations": fed.annotations},
    });
    if !ctx.leader.is_leader() {
        return Ok(None);
    }
    Api::<ServiceAccount>::namespaced(ctx.client.clone(), &w.namespace)
        .patch(
            &w.service_account,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(sa),
        )
        .await?;
    if fed.pod_label {
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": w.deployment, "namespace": w.namespace},
            "spec": {"template": {"metadata": {"labels": {"azure.workload.identity/use": "true"}}}},
        });
        Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace)
            .patch(
                &w.deployment,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(deployment),
            )
            .await?;
    }
    Ok(Some(json!({
        "issuer": issuer,
        "subject": format!("system:serviceaccount:{}:{}", w.namespace, w.service_account),
        "audience": fed.audience,
    })))
}
