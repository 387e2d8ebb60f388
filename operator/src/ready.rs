//! The `Ready` condition that the status controllers (policies, producers)
//! write: the verdict, `observedGeneration`, and no write at all when
//! neither changed, so a steady cluster costs nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::rule_source::condition;

/// Whether an object is usable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `Ready` is `True`.
    pub ready: bool,
    /// The condition's reason.
    pub reason: &'static str,
    /// The condition's message.
    pub message: String,
}

/// What the object's status says now.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed: Option<i64>,
    /// `status.conditions`.
    pub conditions: &'a [Condition],
}

impl Current<'_> {
    fn agrees_with(&self, v: &Verdict) -> bool {
        self.observed == self.generation
            && self.conditions.iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == if v.ready { "True" } else { "False" }
                    && c.reason == v.reason
                    && c.message == v.message
            })
    }
}

/// Server-side applies `Ready` and `observedGeneration` on a cluster-scoped
/// object of kind `K` unless they already say `verdict`; returns whether it wrote.
pub async fn write_ready<K>(
    client: &kube::Client,
    name: &str,
    current: Current<'_>,
    verdict: &Verdict,
    manager: &str,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if current.agrees_with(verdict) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": {
            "observedGeneration": current.generation,
            "conditions": [condition("Ready", verdict.ready, verdict.reason, &verdict.message, current.generation, current.conditions)],
        }
    });
    Api::<K>::all(client.clone())
        .patch_status(
            name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(patch),
        )
        .await?;
    Ok(true)
}
