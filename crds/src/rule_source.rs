//! `RuleSource`: where the operator syncs rules from (the "portal").

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A rules endpoint the operator keeps in sync: it fetches a rule document from
/// `url` (or a ConfigMap) every `interval`, validates all of it, and applies one
/// `SecurityArtifactPolicy` per rule, pruning the ones it created that disappeared.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "RuleSource",
    plural = "rulesources",
    category = "portcullis",
    status = "RuleSourceStatus",
    doc = "A Portcullis rules endpoint: the operator syncs its rules into SecurityArtifactPolicy objects.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.revision"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.url) != has(self.configMapRef)").message("set exactly one of url and configMapRef"),
    validation = Rule::new("!has(self.configMapRef) || (!has(self.authSecretRef) && !has(self.caBundle))").message("authSecretRef and caBundle apply to url only")
)]
pub struct RuleSourceSpec {
    /// HTTPS address of the rule document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https://[^\s]+$"), length(max = 2048))]
    pub url: Option<String>,

    /// Shape of the document: `portcullis` (a list of rules with the fields of
    /// `SecurityArtifactPolicy.spec`) or `defender` (the reference product's
    /// `SecurityArtifactPolicy` v1alpha3).
    #[serde(default)]
    pub format: RuleFormat,

    /// How often to fetch, e.g. `5m` or `1h`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]{1,6}(h|m|s))+$"))]
    pub interval: String,

    /// Secret key holding a bearer token sent to `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretKeyRef>,

    /// PEM certificates trusted for `url`, in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,

    /// ConfigMap key holding the document, instead of `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

fn default_interval() -> String {
    "5m".to_owned()
}

/// Shape of a rule document.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleFormat {
    /// Portcullis rule list (see the README).
    #[default]
    Portcullis,
    /// The reference product's `defender.microsoft.com/v1alpha3` `SecurityArtifactPolicy`.
    Defender,
}

/// A key of a Secret in a namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Namespace of the Secret.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_token_key")]
    pub key: String,
}

fn default_token_key() -> String {
    "token".to_owned()
}

/// A key of a ConfigMap in a namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Namespace of the ConfigMap.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// Name of the ConfigMap.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the ConfigMap.
    #[serde(default = "default_rules_key")]
    pub key: String,
}

fn default_rules_key() -> String {
    "rules.yaml".to_owned()
}

/// Observed state of a rule source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleSourceStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the document was last fetched and applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Revision of the applied document: its `revision` field, its ETag, or a hash of its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Number of rules applied from the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_rules: Option<u32>,
    /// `Synced` (the cluster holds the document's rules) and `Degraded` (the last
    /// attempt failed; nothing was changed), each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
