//! `RegistryAccess`: how the webhook authenticates to registries.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rule_source::SecretKeyRef;

/// How the Portcullis webhook reaches a set of registries to read image manifests
/// and their vulnerability findings. For federated identities the operator
/// annotates the webhook's ServiceAccount and publishes on `status` the credential
/// to register in the cloud.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "RegistryAccess",
    plural = "registryaccesses",
    category = "portcullis",
    status = "RegistryAccessStatus",
    doc = "How the Portcullis webhook authenticates to a set of container registries.",
    printcolumn(name = "Auth", type_ = "string", json_path = ".spec.auth.type"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAccessSpec {
    /// Registry hosts this applies to, `host-glob[:port]`: `*` matches within
    /// one DNS label (`*.azurecr.io` matches `team.azurecr.io`, not
    /// `evil-azurecr.io` or `team.azurecr.io.evil.net`), a pattern without a
    /// port matches the default port only (`registry.example.com:5000`,
    /// `:*` for any). Credentials never go to a host outside these.
    #[schemars(length(min = 1))]
    pub registries: Vec<String>,
    /// How to authenticate.
    pub auth: RegistryAuth,
}

/// Authentication method for a set of registries.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'BasicSecret' || has(self.secretRef)").message("BasicSecret needs secretRef"),
    validation = Rule::new("self.type != 'AzureWorkloadIdentity' || has(self.azureWorkloadIdentity)").message("AzureWorkloadIdentity needs azureWorkloadIdentity"),
    validation = Rule::new("self.type != 'AwsWebIdentity' || has(self.awsWebIdentity)").message("AwsWebIdentity needs awsWebIdentity"),
    validation = Rule::new("self.type != 'GcpWorkloadIdentity' || has(self.gcpWorkloadIdentity)").message("GcpWorkloadIdentity needs gcpWorkloadIdentity"),
    validation = Rule::new("(has(self.secretRef) ? 1 : 0) + (has(self.azureWorkloadIdentity) ? 1 : 0) + (has(self.awsWebIdentity) ? 1 : 0) + (has(self.gcpWorkloadIdentity) ? 1 : 0) <= 1").message("set only the settings of the chosen type")
)]
pub struct RegistryAuth {
    /// `Anonymous`; `PullSecrets` (the pod's and its ServiceAccount's
    /// imagePullSecrets); `BasicSecret` (username and password from `secretRef`);
    /// `AzureWorkloadIdentity`, `AwsWebIdentity` or `GcpWorkloadIdentity` (federated
    /// identity of the webhook's ServiceAccount).
    #[serde(rename = "type")]
    pub auth_type: RegistryAuthType,
    /// For `BasicSecret`: a Secret of type `kubernetes.io/basic-auth` or
    /// `kubernetes.io/dockerconfigjson` (`key` is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// For `AzureWorkloadIdentity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_workload_identity: Option<AzureWorkloadIdentity>,
    /// For `AwsWebIdentity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_web_identity: Option<AwsWebIdentity>,
    /// For `GcpWorkloadIdentity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_workload_identity: Option<GcpWorkloadIdentity>,
}

/// Authentication methods.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RegistryAuthType {
    /// No credentials (public registries; bearer-token challenges without credentials).
    Anonymous,
    /// The admitted pod's and its ServiceAccount's imagePullSecrets.
    PullSecrets,
    /// Username and password from a Secret.
    BasicSecret,
    /// Microsoft Entra workload identity, exchanged for an ACR token.
    AzureWorkloadIdentity,
    /// AWS IAM role assumed with the ServiceAccount's web identity token.
    AwsWebIdentity,
    /// Google service account impersonated through GKE workload identity.
    GcpWorkloadIdentity,
}

/// Microsoft Entra workload identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureWorkloadIdentity {
    /// Directory (tenant) ID.
    #[schemars(length(min = 1))]
    pub tenant_id: String,
    /// Application (client) ID of the managed identity or app registration.
    #[schemars(length(min = 1))]
    pub client_id: String,
}

/// AWS IAM role for service accounts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsWebIdentity {
    /// ARN of the role to assume, e.g. `arn:aws:iam::123456789012:role/portcullis`.
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"))]
    pub role_arn: String,
}

/// Google service account for Artifact Registry and Container Registry: GKE
/// workload identity (the metadata server), or workload identity federation
/// from any cluster when `workloadIdentityProvider` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpWorkloadIdentity {
    /// Google service account email, e.g. `portcullis@project.iam.gserviceaccount.com`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+$"))]
    pub service_account: String,
    /// Workload identity federation: the provider the cluster's
    /// ServiceAccount tokens are exchanged through (the STS audience),
    /// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`
    /// (optionally prefixed with `//iam.googleapis.com/`). Unset on GKE, where
    /// the metadata server gives the service account's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(//iam\.googleapis\.com/)?projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]+/providers/[a-z0-9-]+$"
    ))]
    pub workload_identity_provider: Option<String>,
}

/// Observed state of a registry access configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAccessStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// For federated identities: what to register in the cloud so the webhook's
    /// ServiceAccount token is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_credential: Option<FederatedCredential>,
    /// `Ready`, with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A federated identity credential to register with the cloud provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredential {
    /// The cluster's service account token issuer (from its OIDC discovery document).
    pub issuer: String,
    /// `system:serviceaccount:<namespace>:<serviceaccount>` of the webhook.
    pub subject: String,
    /// Audience the token is requested for, e.g. `api://AzureADTokenExchange`.
    pub audience: String,
}
