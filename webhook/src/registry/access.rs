//! Which credentials the webhook uses for a registry (RegistryAccess, DESIGN
//! §2): the first RegistryAccess (by name) whose pattern matches the registry
//! decides; with none, the registry is read anonymously.
//!
//! A credential never goes to a host outside its pattern (`host-glob[:port]`,
//! `*` within one label, no port = the default port only), and cloud
//! credentials go only to their cloud's registries besides (`azure.rs`,
//! `aws.rs`, `gcp.rs`). Credentials carry the identity of where they came
//! from (RegistryAccess name and UID, Secret UID and resourceVersion), which
//! keys every cache instead of the short-lived password.
//!
//! Secrets are re-read when they change: from `--registry-config` by polling
//! the file; in a cluster, the Secrets a RegistryAccess names are watched by
//! name (never a cluster-wide Secret watch) and pull secrets are read with a
//! short cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};
use moka::future::Cache;
use portcullis_core::pattern::HostGlob;
use portcullis_core::reference::{ImageRef, RegistryHost};
use portcullis_crds::{RegistryAccess, RegistryAuth, RegistryAuthType};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::auth::{Credentials, docker_config_credentials};
use super::aws::Aws;
pub use super::aws::{AwsSettings, PodIdentityAgent};
pub use super::azure::AzureSettings;
use super::azure::{AcrDomains, Azure};
use super::client::RegistryClient;
use super::gcp::Gcp;
pub use super::gcp::GcpSettings;
use super::identity::{IdentityError, IdentityHttp};
use super::lookup::LookupFailure;
use crate::engine::FailureClass;
use crate::metrics::Metrics;

/// One compiled RegistryAccess.
#[derive(Debug, Clone)]
struct AccessRule {
    name: String,
    patterns: Vec<HostGlob>,
    auth: RegistryAuth,
    /// `ra:<name>:<uid>:<hash of auth>`: what cached work done with its
    /// credentials is keyed by.
    identity: Arc<str>,
}

fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The RegistryAccess objects in force.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    rules: Vec<AccessRule>,
}

impl AccessConfig {
    /// Compiles RegistryAccess objects; order is by name, so the result does
    /// not depend on the order they were listed in. An object with a pattern
    /// that does not parse is left out and reported (its registries are then
    /// read anonymously, which can only fail, never admit more).
    pub fn compile(objects: impl IntoIterator<Item = RegistryAccess>) -> (Self, Vec<String>) {
        let mut errors = Vec::new();
        let mut rules: Vec<AccessRule> = objects
            .into_iter()
            .filter_map(|o| {
                let name = o.name_any();
                let auth_hash = short_hash(
                    serde_json::to_string(&o.spec.auth)
                        .unwrap_or_default()
                        .as_bytes(),
                );
                let identity = Arc::from(format!(
                    "ra:{name}:{}:{auth_hash}",
                    o.metadata.uid.as_deref().unwrap_or("-")
                ));
                let patterns = o
                    .spec
                    .registries
                    .iter()
                    .map(|p| HostGlob::parse(p, true))
                    .collect::<Result<Vec<_>, _>>();
                match patterns {
                    Ok(patterns) => Some(AccessRule {
                        name,
                        patterns,
                        auth: o.spec.auth,
                        identity,
                    }),
                    Err(e) => {
                        errors.push(format!("RegistryAccess {name}: registries: {e}"));
                        None
                    }
                }
            })
            .collect();
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        (AccessConfig { rules }, errors)
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether no RegistryAccess covers `registry`: its images are read
    /// anonymously, decided without building the (large) credentials future.
    pub fn is_anonymous(&self, registry: &RegistryHost) -> bool {
        self.rule_for(registry).is_none()
    }

    fn rule_for(&self, registry: &RegistryHost) -> Option<&AccessRule> {
        self.rules
            .iter()
            .find(|r| r.patterns.iter().any(|p| p.matches(registry)))
    }

    /// The pattern (as written) of the first RegistryAccess that covers
    /// `registry`: a bounded metrics label.
    pub fn pattern_for(&self, registry: &RegistryHost) -> Option<&str> {
        self.rules
            .iter()
            .find_map(|r| r.patterns.iter().find(|p| p.matches(registry)))
            .map(HostGlob::as_str)
    }
}

type Objects<T> = Arc<HashMap<(String, String), T>>;

/// Secrets and ServiceAccounts read from `--registry-config`.
pub struct FileObjectsState {
    secrets: Objects<Secret>,
    service_accounts: Objects<ServiceAccount>,
}

/// What the watch of a Secret named by a RegistryAccess knows.
#[derive(Clone)]
pub enum Watched {
    /// Not listed yet.
    Pending,
    /// Listed: the Secret, or `None` when it does not exist.
    Synced(Option<Arc<Secret>>),
    /// The watch fails (e.g. no RBAC `list`/`watch` on it): read directly.
    Unavailable,
}

/// The latest state of a watched Secret.
pub type WatchedSecret = watch::Receiver<Watched>;

/// Secrets watched by name at most; further ones are read with the short
/// cache (RegistryAccesses are written by admins, so this is generous).
const MAX_WATCHED_SECRETS: usize = 256;

/// How long a read waits for a new watch to list its Secret before reading
/// it directly (a watch that cannot list, e.g. without RBAC `list`/`watch`
/// on that Secret, never does).
const WATCH_SYNC_WAIT: Duration = Duration::from_secs(2);

/// Where Secrets and ServiceAccounts come from.
#[derive(Clone)]
pub enum SecretStore {
    /// Objects loaded once (tests; `policies.rs` builds it from files).
    Static {
        /// Secrets by (namespace, name).
        secrets: Arc<HashMap<(String, String), Secret>>,
        /// ServiceAccounts by (namespace, name).
        service_accounts: Arc<HashMap<(String, String), ServiceAccount>>,
    },
    /// Objects from `--registry-config`, reloaded when the file changes
    /// (see [`SecretStore::files`]).
    Files(Arc<ArcSwap<FileObjectsState>>),
    /// The Kubernetes API: Secrets named by RegistryAccesses are watched by
    /// name; pull secrets and ServiceAccounts are read with a short cache.
    Kube {
        /// API client.
        client: Box<kube::Client>,
        /// Secrets by (namespace, name); `None` = absent.
        secrets: Cache<(String, String), Option<Arc<Secret>>>,
        /// ServiceAccounts' imagePullSecrets names.
        service_accounts: Cache<(String, String), Arc<Vec<String>>>,
        /// Watches of Secrets named by RegistryAccesses.
        watched: Arc<Mutex<HashMap<(String, String), WatchedSecret>>>,
    },
}

impl SecretStore {
    /// A store over the API, caching pull secrets and ServiceAccounts for `ttl`.
    pub fn kube(client: kube::Client, ttl: Duration) -> Self {
        SecretStore::Kube {
            client: Box::new(client),
            secrets: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            service_accounts: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            watched: Arc::default(),
        }
    }

    /// The Secrets and ServiceAccounts of `path` (`--registry-config`),
    /// read again whenever its content changes (checked `every`). A change
    /// that does not load is logged and the objects in force are kept.
    pub fn files(path: PathBuf, every: Duration) -> Result<Self, String> {
        let load = |path: &std::path::Path| -> Result<FileObjectsState, String> {
            let objects = crate::policies::FileObjects::load(path).map_err(|e| e.to_string())?;
            match objects.secret_store() {
                SecretStore::Static {
                    secrets,
                    service_accounts,
                } => Ok(FileObjectsState {
                    secrets,
                    service_accounts,
                }),
                _ => Err("unexpected store".into()),
            }
        };
        let state = Arc::new(ArcSwap::from_pointee(load(&path)?));
        let current = state.clone();
        let mut seen = content_hash(&path);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = content_hash(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match load(&path) {
                    Ok(s) => {
                        tracing::info!(path = %path.display(), secrets = s.secrets.len(), "registry Secrets reloaded");
                        current.store(Arc::new(s));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "registry config changed but does not load; keeping the Secrets in force");
                    }
                }
            }
        });
        Ok(SecretStore::Files(state))
    }

    fn file_objects(&self) -> Option<(Objects<Secret>, Objects<ServiceAccount>)> {
        match self {
            SecretStore::Static {
                secrets,
                service_accounts,
            } => Some((secrets.clone(), service_accounts.clone())),
            SecretStore::Files(state) => {
                let s = state.load();
                Some((s.secrets.clone(), s.service_accounts.clone()))
            }
            SecretStore::Kube { .. } => None,
        }
    }

    /// The text of one key of a Secret loaded from files (`None` for the
    /// API store, which is read asynchronously elsewhere).
    pub fn value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        let (secrets, _) = self.file_objects()?;
        secret_value(secrets.get(&(namespace.to_owned(), name.to_owned()))?, key)
    }

    /// An empty static store.
    pub fn empty() -> Self {
        SecretStore::Static {
            secrets: Arc::default(),
            service_accounts: Arc::default(),
        }
    }

    /// A Secret a pod names (pull secrets): read with the short cache.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, String> {
        let key = (namespace.to_owned(), name.to_owned());
        match self {
            SecretStore::Kube {
                client, secrets, ..
            } => {
                let api: kube::Api<Secret> = kube::Api::namespaced((**client).clone(), namespace);
                secrets
                    .try_get_with(key, async move {
                        api.get_opt(name).await.map(|s| s.map(Arc::new))
                    })
                    .await
                    .map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))
            }
            _ => Ok(self
                .file_objects()
                .and_then(|(secrets, _)| secrets.get(&key).cloned().map(Arc::new))),
        }
    }

    /// A Secret a RegistryAccess names: in a cluster, watched by name (a
    /// field selector on `metadata.name` in its namespace), so a change is
    /// used at once.
    async fn referenced_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>, String> {
        let SecretStore::Kube {
            client, watched, ..
        } = self
        else {
            return self.secret(namespace, name).await;
        };
        let key = (namespace.to_owned(), name.to_owned());
        let rx = {
            let mut map = watched.lock().map_err(|_| "Secret watches poisoned")?;
            match map.get(&key) {
                Some(rx) => Some(rx.clone()),
                None if map.len() < MAX_WATCHED_SECRETS => {
                    let rx = watch_secret((**client).clone(), namespace, name);
                    map.insert(key, rx.clone());
                    Some(rx)
                }
                None => None,
            }
        };
        if let Some(mut rx) = rx
            && let Ok(Ok(seen)) = tokio::time::timeout(
                WATCH_SYNC_WAIT,
                rx.wait_for(|w| !matches!(w, Watched::Pending)),
            )
            .await
            && let Watched::Synced(secret) = &*seen
        {
            return Ok(secret.clone());
        }
        self.secret(namespace, name).await
    }

    async fn service_account_pull_secrets(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Vec<String>>, String> {
        fn names(sa: Option<&ServiceAccount>) -> Vec<String> {
            sa.and_then(|sa| sa.image_pull_secrets.as_ref())
                .map(|s| s.iter().map(|r| r.name.clone()).collect())
                .unwrap_or_default()
        }
        let key = (namespace.to_owned(), name.to_owned());
        match self {
            SecretStore::Kube {
                client,
                service_accounts,
                ..
            } => {
                let api: kube::Api<ServiceAccount> =
                    kube::Api::namespaced((**client).clone(), namespace);
                service_accounts
                    .try_get_with(key, async move {
                        api.get_opt(name)
                            .await
                            .map(|sa| Arc::new(names(sa.as_ref())))
                    })
                    .await
                    .map_err(|e| format!("reading ServiceAccount {namespace}/{name}: {e}"))
            }
            _ => Ok(Arc::new(names(
                self.file_objects()
                    .as_ref()
                    .and_then(|(_, sas)| sas.get(&key)),
            ))),
        }
    }
}

/// Watches one Secret by name; the receiver sees it once listed and every
/// change after. The watch lives as long as the webhook.
fn watch_secret(client: kube::Client, namespace: &str, name: &str) -> WatchedSecret {
    let (tx, rx) = watch::channel(Watched::Pending);
    let api: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let what = format!("{namespace}/{name}");
    tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut listed: Option<Arc<Secret>> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => listed = None,
                Ok(watcher::Event::InitApply(s)) => listed = Some(Arc::new(s)),
                Ok(watcher::Event::InitDone) => {
                    tx.send_replace(Watched::Synced(listed.take()));
                }
                Ok(watcher::Event::Apply(s)) => {
                    tracing::info!(secret = %what, "registry Secret changed");
                    tx.send_replace(Watched::Synced(Some(Arc::new(s))));
                }
                Ok(watcher::Event::Delete(_)) => {
                    tx.send_replace(Watched::Synced(None));
                }
                Err(e) => {
                    // Until it lists, readers go to the API directly
                    // instead of waiting; once listed, the last state
                    // stands while the watch recovers.
                    tx.send_if_modified(|w| {
                        let pending = matches!(w, Watched::Pending);
                        if pending {
                            *w = Watched::Unavailable;
                        }
                        pending
                    });
                    tracing::warn!(secret = %what, error = %e, "watching a registry Secret");
                }
            }
        }
    });
    rx
}

/// What identifies the content at `path` (a file, or a directory's files).
fn content_hash(path: &std::path::Path) -> Option<Vec<u8>> {
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update(std::fs::read(&f).ok()?);
    }
    Some(h.finalize().to_vec())
}

/// The admitted pod's identity, for `PullSecrets`.
#[derive(Debug, Clone, Copy)]
pub struct PodIdentity<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// `spec.imagePullSecrets` names.
    pub pull_secrets: &'a [String],
    /// `spec.serviceAccountName` (default `default`).
    pub service_account: &'a str,
}

/// Cloud identity settings of the webhook.
#[derive(Debug, Clone, Default)]
pub struct CloudSettings {
    /// Azure workload identity (AKS).
    pub azure: Option<AzureSettings>,
    /// ACR domains besides `azurecr.io`, `azurecr.cn` and `azurecr.us`.
    pub azure_registry_domains: Vec<String>,
    /// AWS (IRSA, EKS Pod Identity).
    pub aws: AwsSettings,
    /// GCP (federation, GKE metadata server).
    pub gcp: GcpSettings,
}

struct Clouds {
    azure: Azure,
    aws: Aws,
    gcp: Gcp,
}

/// Resolves credentials for registries.
#[derive(Clone)]
pub struct CredentialResolver {
    store: SecretStore,
    clouds: Result<Arc<Clouds>, IdentityError>,
    metrics: Arc<Metrics>,
}

impl CredentialResolver {
    /// A resolver reading Secrets from `store`, with Azure workload identity
    /// if `azure` is given and the other clouds as the environment has them
    /// not (see [`with_clouds`](Self::with_clouds)).
    pub fn new(store: SecretStore, azure: Option<AzureSettings>, client: RegistryClient) -> Self {
        let metrics = client.metrics().clone();
        let clouds = Self::clouds(
            CloudSettings {
                azure,
                ..CloudSettings::default()
            },
            client,
        );
        CredentialResolver {
            store,
            clouds,
            metrics,
        }
    }

    /// A resolver with every cloud identity. The identity client (see
    /// `identity.rs`) gets the guard exceptions for the EKS Pod Identity
    /// agent (when configured) and the GCE metadata server; image lookups
    /// never do.
    pub fn with_clouds(
        store: SecretStore,
        settings: CloudSettings,
        client: RegistryClient,
    ) -> Result<Self, IdentityError> {
        let metrics = client.metrics().clone();
        let clouds = Self::clouds(settings, client)?;
        Ok(CredentialResolver {
            store,
            clouds: Ok(clouds),
            metrics,
        })
    }

    fn clouds(
        settings: CloudSettings,
        client: RegistryClient,
    ) -> Result<Arc<Clouds>, IdentityError> {
        let mut exceptions = vec![
            settings
                .gcp
                .metadata_exception()
                .map_err(IdentityError::Settings)?,
        ];
        exceptions.extend(
            settings
                .aws
                .pod_identity
                .as_ref()
                .and_then(PodIdentityAgent::exception),
        );
        let http = IdentityHttp::new(&client, exceptions)?;
        let domains =
            AcrDomains::new(&settings.azure_registry_domains).map_err(IdentityError::Settings)?;
        Ok(Arc::new(Clouds {
            azure: Azure::new(settings.azure, domains, http.clone(), client),
            aws: Aws::new(settings.aws, http.clone()),
            gcp: Gcp::new(settings.gcp, http),
        }))
    }

    /// Credentials for `image` when admitting `pod`: those of the first
    /// RegistryAccess whose pattern matches its registry, if they apply to
    /// its registry and repository.
    pub async fn credentials(
        &self,
        config: &AccessConfig,
        image: &ImageRef,
        pod: PodIdentity<'_>,
    ) -> Result<Credentials, LookupFailure> {
        let host = image.registry_host();
        let registry = host.as_str();
        let repository = image.repository();
        let Some(rule) = config.rule_for(host) else {
            return Ok(Credentials::Anonymous);
        };
        let fail = |detail: String| LookupFailure {
            class: FailureClass::RegistryAuth,
            detail: format!("RegistryAccess {}: {detail}", rule.name),
        };
        let cloud_fail = |e: IdentityError| LookupFailure {
            class: e.class(),
            detail: format!("RegistryAccess {}: {e}", rule.name),
        };
        let clouds = || self.clouds.as_ref().map_err(|e| cloud_fail(e.clone()));
        let usable = |r: Result<Credentials, IdentityError>| {
            self.metrics.access_usable(&rule.name, r.is_ok());
            r.map(|c| c.identified(rule.identity.clone()))
                .map_err(cloud_fail)
        };
        match rule.auth.auth_type {
            RegistryAuthType::Anonymous => Ok(Credentials::Anonymous),
            RegistryAuthType::BasicSecret => {
                let Some(r) = &rule.auth.secret_ref else {
                    return Err(fail("secretRef is required for BasicSecret".into()));
                };
                let secret = self
                    .store
                    .referenced_secret(&r.namespace, &r.name)
                    .await
                    .map_err(fail)?
                    .ok_or_else(|| fail(format!("Secret {}/{} not found", r.namespace, r.name)))?;
                let creds = secret_credentials(&secret, registry, repository).ok_or_else(|| {
                    fail(format!(
                        "Secret {}/{} holds no credentials for {registry}/{repository}",
                        r.namespace, r.name
                    ))
                })?;
                Ok(creds.identified(format!("{}|secret:{}", rule.identity, version(&secret))))
            }
            RegistryAuthType::PullSecrets => {
                let from_sa = self
                    .store
                    .service_account_pull_secrets(pod.namespace, pod.service_account)
                    .await
                    .map_err(fail)?;
                for name in pod.pull_secrets.iter().chain(from_sa.iter()) {
                    if let Some(secret) =
                        self.store.secret(pod.namespace, name).await.map_err(fail)?
                        && let Some(c) = secret_credentials(&secret, registry, repository)
                    {
                        return Ok(c.identified(format!(
                            "{}|pull:{}/{name}:{}",
                            rule.identity,
                            pod.namespace,
                            version(&secret)
                        )));
                    }
                }
                // As the kubelet does: no matching pull secret means anonymous.
                Ok(Credentials::Anonymous)
            }
            RegistryAuthType::AzureWorkloadIdentity => {
                let Some(wi) = &rule.auth.azure_workload_identity else {
                    return Err(fail("azureWorkloadIdentity is required".into()));
                };
                usable(
                    clouds()?
                        .azure
                        .acr_credentials(
                            &wi.tenant_id,
                            &wi.client_id,
                            host,
                            &rule.name,
                            &self.metrics,
                        )
                        .await,
                )
            }
            RegistryAuthType::AwsWebIdentity => {
                let Some(aws) = &rule.auth.aws_web_identity else {
                    return Err(fail("awsWebIdentity is required".into()));
                };
                usable(
                    clouds()?
                        .aws
                        .ecr_credentials(&aws.role_arn, host, &rule.name, &self.metrics)
                        .await,
                )
            }
            RegistryAuthType::GcpWorkloadIdentity => {
                let Some(gcp) = &rule.auth.gcp_workload_identity else {
                    return Err(fail("gcpWorkloadIdentity is required".into()));
                };
                usable(
                    clouds()?
                        .gcp
                        .registry_credentials(
                            &gcp.service_account,
                            gcp.workload_identity_provider.as_deref(),
                            host,
                            &rule.name,
                            &self.metrics,
                        )
                        .await,
                )
            }
        }
    }
}

/// A Secret's version: UID and resourceVersion from the API; a hash of its
/// content for one read from a file.
fn version(secret: &Secret) -> String {
    match (&secret.metadata.uid, &secret.metadata.resource_version) {
        (Some(uid), Some(rv)) => format!("{uid}@{rv}"),
        _ => {
            let mut material = Vec::new();
            for (k, v) in secret.data.iter().flatten() {
                material.extend([k.as_bytes(), b"\0", &v.0, b"\0"].concat());
            }
            for (k, v) in secret.string_data.iter().flatten() {
                material.extend([k.as_bytes(), b"\x01", v.as_bytes(), b"\x01"].concat());
            }
            format!("content-{}", short_hash(&material))
        }
    }
}

/// The text of `key` in a Secret (`data`, else `stringData`).
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

/// Credentials for `repository` in `registry` in a basic-auth or
/// dockerconfigjson Secret (whose keys may be scoped to a path).
fn secret_credentials(secret: &Secret, registry: &str, repository: &str) -> Option<Credentials> {
    let data = |key: &str| -> Option<Vec<u8>> {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
            return Some(v.0.clone());
        }
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| s.as_bytes().to_vec())
    };
    if let Some(json) = data(".dockerconfigjson") {
        return docker_config_credentials(&json, registry, repository);
    }
    if let Some(json) = data(".dockercfg") {
        // Legacy format: the `auths` map without the wrapper.
        let wrapped = [b"{\"auths\":".as_slice(), &json, b"}"].concat();
        return docker_config_credentials(&wrapped, registry, repository);
    }
    let username = String::from_utf8(data("username")?).ok()?;
    let password = String::from_utf8(data("password")?).ok()?;
    Some(Credentials::Basic { username, password })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ClientSettings;

    fn access(
        name: &str,
        uid: Option<&str>,
        registries: &[&str],
        auth: serde_json::Value,
    ) -> RegistryAccess {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "RegistryAccess",
            "metadata": {"name": name, "uid": uid},
            "spec": {"registries": registries, "auth": auth},
        }))
        .unwrap()
    }

    fn host(s: &str) -> RegistryHost {
        RegistryHost::parse(s).unwrap()
    }

    #[test]
    fn patterns_cannot_reach_another_domain() {
        let basic = serde_json::json!({"type": "BasicSecret", "secretRef": {"namespace": "p", "name": "s"}});
        let (config, errors) = AccessConfig::compile([
            access("a-wildcard", None, &["*.example.com"], basic.clone()),
            access("b-suffix", None, &["registry.example.com*"], basic.clone()),
            access("c-port", None, &["ports.example.org"], basic),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let rule = |h: &str| config.rule_for(&host(h)).map(|r| r.name.as_str());
        assert_eq!(rule("team.example.com"), Some("a-wildcard"));
        assert_eq!(rule("evil-example.com"), None);
        assert_eq!(rule("example.com.evil.net"), None);
        assert_eq!(rule("example.com"), None);
        assert_eq!(rule("a.team.example.com"), None);
        assert_eq!(rule("registry.example.com.evil.net"), None);
        assert_eq!(rule("registry.example.community"), Some("b-suffix"));
        // Without a port, the default port only.
        assert_eq!(rule("team.example.com:5000"), None);
        assert_eq!(rule("ports.example.org:443"), Some("c-port"));
        assert_eq!(rule("ports.example.org:8443"), None);
    }

    fn resolver(store: SecretStore) -> CredentialResolver {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client =
            RegistryClient::new(ClientSettings::default(), Arc::new(Metrics::new().unwrap()))
                .unwrap();
        CredentialResolver::new(store, None, client)
    }

    fn secret(uid: &str, rv: &str, password: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"namespace": "p", "name": "s", "uid": uid, "resourceVersion": rv},
            "stringData": {"username": "u", "password": password},
        }))
        .unwrap()
    }

    fn store(s: Secret) -> SecretStore {
        SecretStore::Static {
            secrets: Arc::new(HashMap::from([(("p".into(), "s".into()), s)])),
            service_accounts: Arc::default(),
        }
    }

    const POD: PodIdentity<'static> = PodIdentity {
        namespace: "shop",
        pull_secrets: &[],
        service_account: "default",
    };

    #[tokio::test]
    async fn caches_are_keyed_by_the_registry_access_and_secret_version() {
        let (config, _) = AccessConfig::compile([access(
            "team",
            Some("uid-ra"),
            &["registry.example.com"],
            serde_json::json!({"type": "BasicSecret", "secretRef": {"namespace": "p", "name": "s"}}),
        )]);
        let image = ImageRef::parse("registry.example.com/team/app:1").unwrap();
        let key = |s: Secret| {
            let config = config.clone();
            let image = image.clone();
            async move {
                resolver(store(s))
                    .credentials(&config, &image, POD)
                    .await
                    .unwrap()
                    .fingerprint()
            }
        };
        let first = key(secret("uid-1", "10", "one")).await;
        assert!(first.starts_with("ra:team:uid-ra:"), "{first}");
        assert!(first.ends_with("|secret:uid-1@10"), "{first}");
        assert!(!first.contains("one"));
        // A new version of the Secret is new credentials; the same version
        // is the same, whatever else happens.
        assert_ne!(first, key(secret("uid-1", "11", "two")).await);
        assert_eq!(first, key(secret("uid-1", "10", "one")).await);
        // A registry the pattern does not match gets nothing.
        let other = ImageRef::parse("registry.example.com.evil.net/team/app:1").unwrap();
        assert_eq!(
            resolver(store(secret("uid-1", "10", "one")))
                .credentials(&config, &other, POD)
                .await,
            Ok(Credentials::Anonymous)
        );
    }

    #[tokio::test]
    async fn cloud_identities_refuse_hosts_of_another_cloud() {
        let (config, _) = AccessConfig::compile([access(
            "aws",
            None,
            &["*"],
            serde_json::json!({"type": "AwsWebIdentity", "awsWebIdentity": {"roleArn": "arn:aws:iam::111111111111:role/r"}}),
        )]);
        let r = resolver(SecretStore::empty());
        for image in [
            "team.azurecr.io/app:1",
            "us-docker.pkg.dev/p/r/app:1",
            "registry.example.com/app:1",
        ] {
            let image = ImageRef::parse(image).unwrap();
            let err = r.credentials(&config, &image, POD).await.unwrap_err();
            assert_eq!(err.class, FailureClass::RegistryAuth, "{err:?}");
            assert!(
                err.detail
                    .contains("is not a registry AWS credentials are sent to"),
                "{err:?}"
            );
        }
        let (config, _) = AccessConfig::compile([access(
            "acr",
            None,
            &["*"],
            serde_json::json!({"type": "AzureWorkloadIdentity", "azureWorkloadIdentity": {"tenantId": "t", "clientId": "c"}}),
        )]);
        let image = ImageRef::parse("111111111111.dkr.ecr.us-east-1.amazonaws.com/app:1").unwrap();
        let err = r.credentials(&config, &image, POD).await.unwrap_err();
        assert!(
            err.detail
                .contains("is not a registry Azure credentials are sent to"),
            "{err:?}"
        );
        let (config, _) = AccessConfig::compile([access(
            "gar",
            None,
            &["*"],
            serde_json::json!({"type": "GcpWorkloadIdentity", "gcpWorkloadIdentity": {"serviceAccount": "sa@p.iam.gserviceaccount.com"}}),
        )]);
        let image = ImageRef::parse("team.azurecr.io/app:1").unwrap();
        let err = r.credentials(&config, &image, POD).await.unwrap_err();
        assert!(
            err.detail
                .contains("is not a registry Google credentials are sent to"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn registry_config_secrets_are_read_again_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.yaml");
        let write = |password: &str| {
            std::fs::write(
                &path,
                format!("apiVersion: v1\nkind: Secret\nmetadata: {{namespace: p, name: s}}\nstringData: {{username: u, password: {password}}}\n"),
            )
            .unwrap();
        };
        write("one");
        let store = SecretStore::files(path.clone(), Duration::from_millis(50)).unwrap();
        let password = |store: &SecretStore| store.value("p", "s", "password");
        assert_eq!(password(&store).as_deref(), Some("one"));
        write("two");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while password(&store).as_deref() != Some("two") {
            assert!(
                std::time::Instant::now() < deadline,
                "the change was not read"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A change that does not load keeps what is in force.
        std::fs::write(&path, "kind: [broken").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(password(&store).as_deref(), Some("two"));
    }
}
