//! The rules and registry access settings in force, swapped atomically so an
//! admission always sees one consistent set. They come from files
//! (`--policy-dir`, `--registry-config`, read strictly: see
//! `portcullis_core::documents`) or from kube reflectors over the CRDs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use portcullis_core::documents::{Document, DocumentError, parse_documents};
use portcullis_core::trust::Producer;
use portcullis_crds::{PolicyAction, RegistryAccess, SecurityArtifactPolicy, TrustedProducer};

use crate::engine::{PolicySet, RuleError};
use crate::metrics::Metrics;
use crate::registry::access::{AccessConfig, SecretStore};
use crate::registry::artifacts::ProducerSet;

/// A consistent view of what is in force.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The compiled rules.
    pub policies: PolicySet,
    /// RegistryAccess settings.
    pub access: AccessConfig,
    /// TrustedProducers, loaded.
    pub producers: Arc<ProducerSet>,
}

/// Shared, atomically replaced snapshot plus readiness.
#[derive(Debug, Default)]
pub struct PolicyStore {
    current: ArcSwap<Snapshot>,
    ready: AtomicBool,
}

impl PolicyStore {
    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// True once the sources have been read.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the sources as read.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// A configuration file or directory that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable file or directory.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A document that does not load.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// Two objects of one kind with one name.
    #[error("{kind} {name} is defined twice: in {first} and in {second}")]
    Duplicate {
        /// Kind.
        kind: &'static str,
        /// Name (`namespace/name` for namespaced kinds).
        name: String,
        /// Where first.
        first: String,
        /// Where again.
        second: String,
    },
    /// A rule that does not compile.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A RegistryAccess that does not compile.
    #[error("{0}")]
    Access(String),
    /// A TrustedProducer whose keys or root do not load.
    #[error("TrustedProducer {name}: {message}")]
    Producer {
        /// Its name.
        name: String,
        /// Why.
        message: String,
    },
}

/// Objects read from configuration files.
#[derive(Debug, Default)]
pub struct FileObjects {
    /// SecurityArtifactPolicies.
    pub policies: Vec<SecurityArtifactPolicy>,
    /// RegistryAccesses.
    pub access: Vec<RegistryAccess>,
    /// TrustedProducers.
    pub producers: Vec<TrustedProducer>,
    /// Secrets (for BasicSecret and PullSecrets outside a cluster).
    pub secrets: Vec<Secret>,
    /// ServiceAccounts (their imagePullSecrets).
    pub service_accounts: Vec<ServiceAccount>,
    /// Where each object was defined, by (kind, name).
    seen: BTreeMap<(&'static str, String), String>,
}

impl FileObjects {
    /// Reads every `*.yaml`, `*.yml` and `*.json` file of `path` (a directory,
    /// not recursive, or one file). Multi-document YAML is allowed. Known
    /// kinds the webhook does not use and other API groups are skipped with a
    /// log line; anything malformed or defined twice is an error.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let mut out = FileObjects::default();
        out.add(path)?;
        Ok(out)
    }

    /// Adds the objects of another file or directory.
    pub fn add(&mut self, path: &Path) -> Result<(), LoadError> {
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        for file in files {
            self.read_file(&file)?;
        }
        Ok(())
    }

    fn read_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let file = path.display().to_string();
        for (i, doc) in parse_documents(&text, &file)?.into_iter().enumerate() {
            let place = format!("{file} (document {})", i + 1);
            match doc {
                Document::Policy(p) => {
                    self.note("SecurityArtifactPolicy", p.name_any(), &place)?;
                    self.policies.push(*p);
                }
                Document::Access(a) => {
                    self.note("RegistryAccess", a.name_any(), &place)?;
                    self.access.push(*a);
                }
                Document::Producer(p) => {
                    self.note("TrustedProducer", p.name_any(), &place)?;
                    self.producers.push(*p);
                }
                Document::Secret(s) => {
                    self.note("Secret", namespaced(&s.metadata), &place)?;
                    self.secrets.push(*s);
                }
                Document::ServiceAccount(s) => {
                    self.note("ServiceAccount", namespaced(&s.metadata), &place)?;
                    self.service_accounts.push(*s);
                }
                Document::Unused { kind, name } => {
                    tracing::info!(%place, %kind, %name, "skipping a Portcullis object the webhook does not read");
                }
                Document::Foreign { api_version, kind } => {
                    tracing::info!(%place, %api_version, %kind, "skipping an object of another API group");
                }
            }
        }
        Ok(())
    }

    fn note(&mut self, kind: &'static str, name: String, place: &str) -> Result<(), LoadError> {
        if let Some(first) = self.seen.get(&(kind, name.clone())) {
            return Err(LoadError::Duplicate {
                kind,
                name,
                first: first.clone(),
                second: place.to_owned(),
            });
        }
        self.seen.insert((kind, name), place.to_owned());
        Ok(())
    }

    /// The Secrets and ServiceAccounts as a store.
    pub fn secret_store(&self) -> SecretStore {
        let key = |m: &kube::api::ObjectMeta| {
            (
                m.namespace.clone().unwrap_or_else(|| "default".into()),
                m.name.clone().unwrap_or_default(),
            )
        };
        let secrets: HashMap<_, _> = self
            .secrets
            .iter()
            .map(|s| (key(&s.metadata), s.clone()))
            .collect();
        let service_accounts: HashMap<_, _> = self
            .service_accounts
            .iter()
            .map(|s| (key(&s.metadata), s.clone()))
            .collect();
        SecretStore::Static {
            secrets: Arc::new(secrets),
            service_accounts: Arc::new(service_accounts),
        }
    }
}

fn namespaced(m: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or_default()
    )
}

/// Reads `--policy-dir` (and `--registry-config`) into a snapshot; any
/// invalid document or rule is an error (files have no status to show it in,
/// so the rules in force are kept and the error logged instead).
pub fn load_files(
    policy_dir: &Path,
    registry_config: Option<&Path>,
) -> Result<Snapshot, LoadError> {
    let mut files = FileObjects::load(policy_dir)?;
    if let Some(path) = registry_config {
        files.add(path)?;
    }
    let policies = PolicySet::compile(files.policies.iter().map(named))?;
    let (access, errors) = AccessConfig::compile(std::mem::take(&mut files.access));
    if let Some(e) = errors.into_iter().next() {
        return Err(LoadError::Access(e));
    }
    // Secret-referenced keys come from the Secrets of these files; trusted
    // roots are inline (no ConfigMaps outside a cluster).
    let secrets = files.secret_store();
    let mut loaded = Vec::new();
    for p in &files.producers {
        let name = p.name_any();
        let secret =
            |r: &portcullis_crds::PublicKeySecretRef| secrets.value(&r.namespace, &r.name, &r.key);
        match Producer::load(&name, &p.spec, secret, |_| None) {
            Ok(producer) => loaded.push((producer, producer_material(p, &secret))),
            // A Secret or ConfigMap that lives only in a cluster: the producer
            // is left out (rules naming it see no verified evidence from it).
            Err(
                e @ (portcullis_core::trust::ProducerError::SecretNotFound { .. }
                | portcullis_core::trust::ProducerError::TrustedRootNotFound { .. }),
            ) => {
                tracing::warn!(producer = %name, error = %e, "TrustedProducer left out: its keys or trusted root are not in these files");
            }
            // What is written in the files is wrong: an error, as for rules.
            Err(e) => {
                return Err(LoadError::Producer {
                    name: name.clone(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(Snapshot {
        policies,
        access,
        producers: Arc::new(ProducerSet::new(loaded)),
    })
}

/// What a producer's verification depends on, for cache keys: its spec and
/// the contents of the Secrets and ConfigMaps it names.
fn producer_material(
    p: &TrustedProducer,
    secret: &dyn Fn(&portcullis_crds::PublicKeySecretRef) -> Option<String>,
) -> String {
    let mut material = serde_json::to_string(&p.spec).unwrap_or_default();
    for k in &p.spec.public_keys {
        if let Some(r) = &k.secret_ref {
            material.push_str(&secret(r).unwrap_or_default());
        }
    }
    material
}

fn named(p: &SecurityArtifactPolicy) -> (&str, &portcullis_crds::SecurityArtifactPolicySpec) {
    (p.metadata.name.as_deref().unwrap_or_default(), &p.spec)
}

/// What identifies the current content of the files: paths, sizes, times.
fn files_fingerprint(paths: &[&Path]) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    for path in paths {
        let entries: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(path)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            vec![path.to_path_buf()]
        };
        for e in entries {
            // metadata() follows symlinks, as ConfigMap volumes swap them.
            if let Ok(m) = std::fs::metadata(&e) {
                out.push((e, m.len(), m.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

/// Reloads the files when they change. A change that does not load (bad
/// YAML, an unknown field, an invalid rule) is logged, counted in
/// `portcullis_policy_reload_failures_total` and shown by
/// `portcullis_policy_last_reload_success 0`; the rules in force are kept.
pub async fn watch_files(
    policy_dir: PathBuf,
    registry_config: Option<PathBuf>,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    every: std::time::Duration,
) {
    let mut watched = vec![policy_dir.clone()];
    watched.extend(registry_config.clone());
    let refs: Vec<&Path> = watched.iter().map(PathBuf::as_path).collect();
    let mut seen = files_fingerprint(&refs);
    let mut pending: Option<Vec<(PathBuf, u64, Option<std::time::SystemTime>)>> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = files_fingerprint(&refs);
        if now == seen {
            pending = None;
            continue;
        }
        // Load only what stayed the same for a whole interval: a file being
        // written (truncated, then filled) must never load as "no rules".
        if pending.as_ref() != Some(&now) {
            pending = Some(now);
            continue;
        }
        pending = None;
        seen = now;
        match load_files(&policy_dir, registry_config.as_deref()) {
            Ok(snapshot) => {
                metrics.set_policies(snapshot.policies.rules().len());
                metrics.policy_reload(true);
                tracing::info!(
                    rules = snapshot.policies.rules().len(),
                    "policy files reloaded"
                );
                store.replace(snapshot);
            }
            Err(e) => {
                metrics.policy_reload(false);
                tracing::warn!(error = %e, "policy files changed but do not load; keeping the rules in force");
            }
        }
    }
}

/// What to do with a SecurityArtifactPolicy from the API that does not
/// compile (CEL cannot check everything, e.g. registry patterns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidRulePolicy {
    /// An invalid Deny rule denies every image in its scope (fail closed);
    /// an invalid Audit rule audits them.
    #[default]
    Deny,
    /// Invalid rules of either action audit every image in their scope.
    Audit,
    /// Invalid rules are left out (logged only): fails open.
    Ignore,
}

/// Compiles the cluster's policies; invalid ones are handled per `invalid`,
/// logged and counted.
pub fn compile_cluster(
    policies: &[SecurityArtifactPolicy],
    invalid: InvalidRulePolicy,
    metrics: &Metrics,
) -> PolicySet {
    let invalid_deny = match invalid {
        InvalidRulePolicy::Deny => Some(PolicyAction::Deny),
        InvalidRulePolicy::Audit => Some(PolicyAction::Audit),
        InvalidRulePolicy::Ignore => None,
    };
    let (set, errors) = PolicySet::compile_lenient(policies.iter().map(named), invalid_deny);
    for e in &errors {
        tracing::warn!(policy = %e.rule, error = %e.problem, handling = ?invalid, "invalid SecurityArtifactPolicy");
    }
    metrics.set_invalid_policies(errors.len());
    set
}

/// Keeps `store` in step with the cluster's SecurityArtifactPolicies,
/// RegistryAccesses and TrustedProducers. Marks it ready once all three have
/// been listed and the producers loaded. Producers are loaded again when one
/// changes and every minute (their keys may live in Secrets).
pub async fn run_reflectors(
    client: kube::Client,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    invalid: InvalidRulePolicy,
) {
    #[derive(Clone, Copy)]
    enum Change {
        Rules,
        Producers,
    }
    let (policy_reader, policy_writer) = reflector::store::<SecurityArtifactPolicy>();
    let (access_reader, access_writer) = reflector::store::<RegistryAccess>();
    let (producer_reader, producer_writer) = reflector::store::<TrustedProducer>();
    let policies = watcher(
        Api::<SecurityArtifactPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(policy_writer)
    .applied_objects()
    .map(|_| Change::Rules)
    .boxed();
    let access = watcher(
        Api::<RegistryAccess>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(access_writer)
    .applied_objects()
    .map(|_| Change::Rules)
    .boxed();
    let producers = watcher(
        Api::<TrustedProducer>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(producer_writer)
    .applied_objects()
    .map(|_| Change::Producers)
    .boxed();
    let every_minute = futures::stream::unfold((), |()| async {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        Some((Change::Producers, ()))
    })
    .boxed();
    let loaded: Arc<ArcSwap<ProducerSet>> = Arc::default();
    let rebuild = {
        let store = store.clone();
        let (policy_reader, access_reader) = (policy_reader.clone(), access_reader.clone());
        let loaded = loaded.clone();
        move || {
            rebuild(
                &store,
                &policy_reader,
                &access_reader,
                loaded.load_full(),
                &metrics,
                invalid,
            )
        }
    };
    let reload = {
        let (client, reader, loaded) = (client.clone(), producer_reader.clone(), loaded.clone());
        move || {
            let (client, reader, loaded) = (client.clone(), reader.clone(), loaded.clone());
            async move { loaded.store(Arc::new(load_producers(&client, &reader).await)) }
        }
    };
    let ready = {
        let (p, a, t) = (
            policy_reader.clone(),
            access_reader.clone(),
            producer_reader.clone(),
        );
        let store = store.clone();
        let (rebuild, reload) = (rebuild.clone(), reload.clone());
        async move {
            if p.wait_until_ready().await.is_ok()
                && a.wait_until_ready().await.is_ok()
                && t.wait_until_ready().await.is_ok()
            {
                reload().await;
                rebuild();
                store.set_ready();
                tracing::info!(
                    "policies, registry access and trusted producers synced from the API"
                );
            }
        }
    };
    let events = futures::stream::select_all([policies, access, producers, every_minute]).for_each(
        |change| {
            let (rebuild, reload) = (rebuild.clone(), reload.clone());
            async move {
                // Also before the first full sync: nothing is served until
                // `ready` has rebuilt, and no change in between is lost.
                if let Change::Producers = change {
                    reload().await;
                }
                rebuild();
            }
        },
    );
    futures::join!(ready, events);
}

/// Loads every TrustedProducer, reading the Secrets and ConfigMaps they
/// name. One that does not load is left out with a log line (its status,
/// written by the operator, says why): rules naming it then see no verified
/// evidence from it.
async fn load_producers(client: &kube::Client, reader: &Store<TrustedProducer>) -> ProducerSet {
    use std::collections::BTreeMap;
    let mut secrets: BTreeMap<(String, String, String), Option<String>> = BTreeMap::new();
    let mut config_maps: BTreeMap<(String, String, String), Option<String>> = BTreeMap::new();
    let objects = reader.state();
    for p in &objects {
        for k in &p.spec.public_keys {
            if let Some(r) = &k.secret_ref {
                let key = (r.namespace.clone(), r.name.clone(), r.key.clone());
                if let std::collections::btree_map::Entry::Vacant(slot) = secrets.entry(key) {
                    let api: Api<Secret> = Api::namespaced(client.clone(), &r.namespace);
                    let value = match api.get_opt(&r.name).await {
                        Ok(s) => s.and_then(|s| crate::registry::access::secret_value(&s, &r.key)),
                        Err(e) => {
                            tracing::warn!(error = %e, secret = %r.name, namespace = %r.namespace, "reading a TrustedProducer's key");
                            None
                        }
                    };
                    slot.insert(value);
                }
            }
        }
        if let Some(r) = &p.spec.trusted_root_ref {
            let key = (r.namespace.clone(), r.name.clone(), r.key.clone());
            if let std::collections::btree_map::Entry::Vacant(slot) = config_maps.entry(key) {
                let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
                    Api::namespaced(client.clone(), &r.namespace);
                let value = match api.get_opt(&r.name).await {
                    Ok(c) => c.and_then(|c| c.data.and_then(|d| d.get(&r.key).cloned())),
                    Err(e) => {
                        tracing::warn!(error = %e, config_map = %r.name, namespace = %r.namespace, "reading a TrustedProducer's trusted root");
                        None
                    }
                };
                slot.insert(value);
            }
        }
    }
    let mut loaded = Vec::new();
    for p in &objects {
        let name = p.name_any();
        let secret = |r: &portcullis_crds::PublicKeySecretRef| {
            secrets
                .get(&(r.namespace.clone(), r.name.clone(), r.key.clone()))
                .cloned()
                .flatten()
        };
        let config_map = |r: &portcullis_crds::TrustedRootRef| {
            config_maps
                .get(&(r.namespace.clone(), r.name.clone(), r.key.clone()))
                .cloned()
                .flatten()
        };
        match Producer::load(&name, &p.spec, secret, config_map) {
            Ok(producer) => {
                let mut material = producer_material(p, &secret);
                if let Some(r) = &p.spec.trusted_root_ref {
                    material.push_str(&config_map(r).unwrap_or_default());
                }
                loaded.push((producer, material));
            }
            Err(e) => tracing::warn!(producer = %name, error = %e, "TrustedProducer left out"),
        }
    }
    ProducerSet::new(loaded)
}

fn rebuild(
    store: &PolicyStore,
    policies: &Store<SecurityArtifactPolicy>,
    access: &Store<RegistryAccess>,
    producers: Arc<ProducerSet>,
    metrics: &Metrics,
    invalid: InvalidRulePolicy,
) {
    let objects: Vec<SecurityArtifactPolicy> =
        policies.state().iter().map(|p| (**p).clone()).collect();
    let set = compile_cluster(&objects, invalid, metrics);
    metrics.set_policies(set.rules().len());
    let (access, errors) = AccessConfig::compile(access.state().iter().map(|a| (**a).clone()));
    for e in errors {
        tracing::warn!(error = %e, "RegistryAccess left out");
    }
    store.replace(Snapshot {
        policies: set,
        access,
        producers,
    });
}
