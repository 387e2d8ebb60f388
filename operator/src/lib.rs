//! Portcullis operator: syncs RuleSources (portal documents) into
//! SecurityArtifactPolicies, keeps the webhook's certificate and caBundle,
//! sets up federated registry identity, ensures the default rule, reports
//! whether each policy compiles in the gating engine, and elects
//! a leader so that only one replica writes.

pub mod certificates;
pub mod default_rule;
pub mod document;
pub mod identity;
pub mod leadership;
pub mod metrics;
pub mod policy_status;
pub mod portal;
pub mod producer_status;
pub mod ready;
pub mod rule_source;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// A CRD the operator needs is missing or cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CrdCheckError {
    /// Not installed.
    #[error(
        "CustomResourceDefinition {0} is not installed: run `kubectl apply -f config/crd/` first"
    )]
    Missing(&'static str),
    /// The API server refused to say.
    #[error("checking CustomResourceDefinition {name}: {source}")]
    Api {
        /// The CRD.
        name: &'static str,
        /// Why.
        source: kube::Error,
    },
}

/// Checks that the CRDs this operator needs are installed; the error says how
/// to install them.
pub async fn check_crds(client: &kube::Client) -> Result<(), CrdCheckError> {
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for name in [
        portcullis_crds::RuleSource::crd_name(),
        portcullis_crds::SecurityArtifactPolicy::crd_name(),
        portcullis_crds::RegistryAccess::crd_name(),
        portcullis_crds::TrustedProducer::crd_name(),
    ] {
        match crds.get_opt(name).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(CrdCheckError::Missing(name)),
            Err(source) => return Err(CrdCheckError::Api { name, source }),
        }
    }
    Ok(())
}
