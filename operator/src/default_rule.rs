//! The out-of-the-box rule: audit any High or Critical finding, cluster-wide
//! (the reference product's default). Created once when absent; a user's
//! edit, or a user's deletion after creation is recorded, is never undone.

use kube::Api;
use kube::api::PostParams;
use portcullis_crds::SecurityArtifactPolicy;
use serde_json::json;

/// Name of the default rule.
pub const DEFAULT_RULE: &str = "default-audit-high-critical";

/// What `ensure_default_rule` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultRule {
    /// It was absent and was created.
    Created,
    /// It exists (as created, or as the user edited it): left alone.
    Present,
}

/// The default rule as first created.
pub fn default_rule() -> Result<SecurityArtifactPolicy, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "SecurityArtifactPolicy",
        "metadata": {
            "name": DEFAULT_RULE,
            "labels": {"app.kubernetes.io/managed-by": "portcullis-operator"},
            "annotations": {"portcullis.dev/default-rule": "created once by the operator; edit freely, it is never overwritten"},
        },
        "spec": {
            "action": "Audit",
            "priority": 1000,
            "description": "Audits every image with High or Critical vulnerabilities (the default rule).",
            "conditions": {"maxAllowedSeverities": {"high": 0}},
            "findings": {"maximumAge": "365d"},
        },
    }))
}

/// Creates the default rule if it does not exist. Uses create (never update),
/// so a concurrent or earlier user object always wins.
pub async fn ensure_default_rule(client: &kube::Client) -> Result<DefaultRule, kube::Error> {
    let api: Api<SecurityArtifactPolicy> = Api::all(client.clone());
    if api.get_opt(DEFAULT_RULE).await?.is_some() {
        return Ok(DefaultRule::Present);
    }
    let rule = default_rule().map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &rule).await {
        Ok(_) => Ok(DefaultRule::Created),
        // Someone created it in between: theirs stays.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(DefaultRule::Present),
        Err(e) => Err(e),
    }
}
