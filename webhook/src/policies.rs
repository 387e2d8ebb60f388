//! The rules and registry access settings in force, swapped atomically so an
//! admission always sees one consistent set. They come from files
//! (`--policy-dir`, `--registry-config`) or from kube reflectors over the CRDs
//! ("gating against the reconciled cache").

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use portcullis_crds::{RegistryAccess, SecurityArtifactPolicy};
use serde_json::Value;

use crate::engine::{CompiledRule, PolicySet};
use crate::metrics::Metrics;
use crate::registry::access::{AccessConfig, SecretStore};

/// A consistent view of what is in force.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The compiled rules.
    pub policies: PolicySet,
    /// RegistryAccess settings.
    pub access: AccessConfig,
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
    /// Not YAML/JSON, or an object that does not fit its kind.
    #[error("{path}: {message}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// What is wrong.
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
    /// Secrets (for BasicSecret and PullSecrets outside a cluster).
    pub secrets: Vec<Secret>,
    /// ServiceAccounts (their imagePullSecrets).
    pub service_accounts: Vec<ServiceAccount>,
}

impl FileObjects {
    /// Reads every `*.yaml`, `*.yml` and `*.json` file of `path` (a directory,
    /// not recursive, or one file). Multi-document YAML is allowed; objects of
    /// other kinds are skipped, so a directory of mixed samples works.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
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
        let mut out = FileObjects::default();
        for file in files {
            out.read_file(&file)?;
        }
        Ok(out)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let parse = |message: String| LoadError::Parse {
            path: path.to_owned(),
            message,
        };
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| parse(e.to_string()))?;
        for (i, doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            let kind = doc
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let at = |e: serde_json::Error| parse(format!("document {} ({kind}): {e}", i + 1));
            match kind.as_str() {
                "SecurityArtifactPolicy" => {
                    let p: SecurityArtifactPolicy = serde_json::from_value(doc).map_err(at)?;
                    p.spec.validate().map_err(|e| {
                        parse(format!("SecurityArtifactPolicy {}: {e}", p.name_any()))
                    })?;
                    self.policies.push(p);
                }
                "RegistryAccess" => self.access.push(serde_json::from_value(doc).map_err(at)?),
                "Secret" => self.secrets.push(serde_json::from_value(doc).map_err(at)?),
                "ServiceAccount" => self
                    .service_accounts
                    .push(serde_json::from_value(doc).map_err(at)?),
                _ => {}
            }
        }
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

/// Reads `--policy-dir` (and `--registry-config`) into a snapshot; any
/// invalid rule is an error.
pub fn load_files(policy_dir: &Path, registry_config: Option<&Path>) -> Result<Snapshot, String> {
    let files = FileObjects::load(policy_dir).map_err(|e| e.to_string())?;
    let access = match registry_config {
        Some(path) => FileObjects::load(path).map_err(|e| e.to_string())?.access,
        None => Vec::new(),
    };
    Ok(Snapshot {
        policies: compile(&files.policies, true)?,
        access: AccessConfig::new(access),
    })
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
/// YAML, an invalid rule) is logged and the rules in force are kept.
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
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = files_fingerprint(&refs);
        if now == seen {
            continue;
        }
        seen = now;
        match load_files(&policy_dir, registry_config.as_deref()) {
            Ok(snapshot) => {
                metrics.set_policies(snapshot.policies.rules().len());
                tracing::info!(
                    rules = snapshot.policies.rules().len(),
                    "policy files reloaded"
                );
                store.replace(snapshot);
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy files changed but do not load; keeping the rules in force")
            }
        }
    }
}

/// Compiles policies; with `strict`, the first invalid rule is an error, else
/// invalid rules are logged and left out (the API server's CEL rules should
/// have refused them already).
pub fn compile(policies: &[SecurityArtifactPolicy], strict: bool) -> Result<PolicySet, String> {
    let mut rules = Vec::with_capacity(policies.len());
    for p in policies {
        let name = p.name_any();
        match CompiledRule::compile(&name, &p.spec) {
            Ok(r) => rules.push(r),
            Err(e) if strict => return Err(e.to_string()),
            Err(e) => {
                tracing::warn!(policy = %name, error = %e, "ignoring invalid SecurityArtifactPolicy")
            }
        }
    }
    Ok(PolicySet::new(rules))
}

/// Keeps `store` in step with the cluster's SecurityArtifactPolicies and
/// RegistryAccesses. Marks it ready once both have been listed.
pub async fn run_reflectors(client: kube::Client, store: Arc<PolicyStore>, metrics: Arc<Metrics>) {
    let (policy_reader, policy_writer) = reflector::store::<SecurityArtifactPolicy>();
    let (access_reader, access_writer) = reflector::store::<RegistryAccess>();
    let policies = watcher(
        Api::<SecurityArtifactPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(policy_writer)
    .applied_objects()
    .map(|_| ())
    .boxed();
    let access = watcher(
        Api::<RegistryAccess>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(access_writer)
    .applied_objects()
    .map(|_| ())
    .boxed();
    let rebuild = {
        let store = store.clone();
        let (policy_reader, access_reader) = (policy_reader.clone(), access_reader.clone());
        move || rebuild(&store, &policy_reader, &access_reader, &metrics)
    };
    let ready = {
        let (p, a) = (policy_reader.clone(), access_reader.clone());
        let store = store.clone();
        let rebuild = rebuild.clone();
        async move {
            if p.wait_until_ready().await.is_ok() && a.wait_until_ready().await.is_ok() {
                rebuild();
                store.set_ready();
                tracing::info!("policies and registry access synced from the API");
            }
        }
    };
    let events = futures::stream::select(policies, access).for_each(|()| {
        rebuild();
        futures::future::ready(())
    });
    futures::join!(ready, events);
}

fn rebuild(
    store: &PolicyStore,
    policies: &Store<SecurityArtifactPolicy>,
    access: &Store<RegistryAccess>,
    metrics: &Metrics,
) {
    let objects: Vec<SecurityArtifactPolicy> =
        policies.state().iter().map(|p| (**p).clone()).collect();
    // Never fails when not strict.
    let set = compile(&objects, false).unwrap_or_default();
    metrics.set_policies(set.rules().len());
    store.replace(Snapshot {
        policies: set,
        access: AccessConfig::new(access.state().iter().map(|a| (**a).clone())),
    });
}
