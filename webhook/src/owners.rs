//! In a cluster, an owner a trusted controller named must also exist with the
//! UID named, before its workload counts for `Workload` matchers and
//! exemptions. The owner's own controller then names the workload (a
//! ReplicaSet's Deployment, a Job's CronJob), read from the API rather than
//! guessed from the Pod's labels. Metadata-only GETs, cached briefly.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use moka::future::Cache;

use crate::admission::OwnerClaim;

/// Kinds that own Pods or pod templates, with their plural resource name.
const OWNER_KINDS: &[(&str, &str, &str)] = &[
    ("apps", "ReplicaSet", "replicasets"),
    ("apps", "Deployment", "deployments"),
    ("apps", "StatefulSet", "statefulsets"),
    ("apps", "DaemonSet", "daemonsets"),
    ("batch", "Job", "jobs"),
    ("batch", "CronJob", "cronjobs"),
    ("", "ReplicationController", "replicationcontrollers"),
];

#[derive(Debug, Clone)]
struct OwnerMeta {
    uid: String,
    /// The owner's own controller (kind, name), if any.
    controller: Option<(String, String)>,
}

/// Verifies claimed owners against the API.
#[derive(Clone)]
pub struct OwnerVerifier {
    client: kube::Client,
    /// (namespace, kind, name) → metadata, or `None` when absent.
    cache: Cache<(String, String, String), Option<Arc<OwnerMeta>>>,
}

impl OwnerVerifier {
    /// A verifier caching answers for `ttl`.
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        OwnerVerifier {
            client,
            cache: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The workload name of a verified owner: the owner's controller when it
    /// is a Deployment or CronJob, else the owner. `Ok(None)` when the owner
    /// does not exist, has another UID, or is not a workload kind.
    pub async fn workload(
        &self,
        namespace: &str,
        claim: &OwnerClaim,
    ) -> Result<Option<String>, String> {
        let group = claim.api_version.split_once('/').map_or("", |(g, _)| g);
        let Some(meta) = self
            .metadata(namespace, group, &claim.kind, &claim.name)
            .await?
        else {
            return Ok(None);
        };
        if meta.uid != claim.uid {
            return Ok(None);
        }
        Ok(Some(match &meta.controller {
            Some((kind, name)) if kind == "Deployment" || kind == "CronJob" => name.clone(),
            _ => claim.name.clone(),
        }))
    }

    async fn metadata(
        &self,
        namespace: &str,
        group: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<Arc<OwnerMeta>>, String> {
        let Some((group, kind, plural)) = OWNER_KINDS
            .iter()
            .find(|(g, k, _)| *g == group && *k == kind)
            .copied()
        else {
            return Ok(None);
        };
        let key = (namespace.to_owned(), kind.to_owned(), name.to_owned());
        let client = self.client.clone();
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.cache
            .try_get_with(key, async move {
                // Every owner kind here is served at v1.
                let resource = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(group, "v1", kind),
                    plural,
                );
                let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
                let found = api
                    .get_metadata_opt(&name)
                    .await
                    .map_err(|e| format!("reading {kind} {namespace}/{name}: {e}"))?;
                Ok::<_, String>(found.map(|o| {
                    let controller = o
                        .metadata
                        .owner_references
                        .unwrap_or_default()
                        .into_iter()
                        .find(|r| r.controller == Some(true))
                        .map(|r| (r.kind, r.name));
                    Arc::new(OwnerMeta {
                        uid: o.metadata.uid.unwrap_or_default(),
                        controller,
                    })
                }))
            })
            .await
            .map_err(|e| (*e).clone())
    }
}
