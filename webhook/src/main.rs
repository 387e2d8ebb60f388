//! `portcullis-webhook`: start-up only; see the library for everything else.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use kube::runtime::events::{Recorder, Reporter};
use portcullis_webhook::admission::OwnerTrust;
use portcullis_webhook::config::Config;
use portcullis_webhook::engine::AnswerOptions;
use portcullis_webhook::gate::{EventSink, Gate, ParsedReferences, ReviewLimits};
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::owners::OwnerVerifier;
use portcullis_webhook::policies::{self, PolicyStore};
use portcullis_webhook::reference::RegistryHost;
use portcullis_webhook::registry::access::{
    AwsSettings, AzureSettings, CloudSettings, CredentialResolver, GcpSettings, PodIdentityAgent,
    SecretStore,
};
use portcullis_webhook::registry::dns::DnsSettings;
use portcullis_webhook::registry::guard::DestinationGuard;
use portcullis_webhook::registry::lookup::{CacheBudget, ImageLookup, LookupSettings};
use portcullis_webhook::registry::{ClientSettings, RegistryClient};
use portcullis_webhook::server::{self, AppState, ServerLimits};
use tokio::sync::Semaphore;

/// mimalloc: every admission allocates and frees many small strings across
/// worker threads; glibc's allocator was about a tenth of the warm path's CPU.
/// The image sets `MIMALLOC_ARENA_EAGER_COMMIT=0` (see the Dockerfile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    portcullis_runtime::logging::init(&config.logging);
    portcullis_runtime::process::run("portcullis-webhook", run(config))
}

/// Why the webhook cannot start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The metrics registry refused a metric.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A flag's value cannot be used.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        message: String,
    },
    /// A file named by a flag cannot be read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        message: String,
    },
    /// The registry client cannot be built.
    #[error(transparent)]
    Registry(#[from] portcullis_webhook::registry::RegistryError),
    /// No API server to read rules from.
    #[error(
        "connecting to the Kubernetes API (use --policy-dir and --registry-config outside a cluster): {0}"
    )]
    Kube(#[from] kube::Error),
    /// The policy files do not load.
    #[error(transparent)]
    Policies(#[from] policies::LoadError),
    /// A cloud identity cannot be set up.
    #[error(transparent)]
    Identity(#[from] portcullis_webhook::registry::identity::IdentityError),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    /// Neither --policy-dir nor a cluster.
    #[error("no policy source: give --policy-dir, or run in a cluster")]
    NoPolicySource,
}

/// `host[:port]` settings normalised like image references, so they compare
/// with the registries the gate sees.
fn registry_set(
    flag: &'static str,
    values: &[String],
) -> Result<std::collections::HashSet<String>, StartError> {
    values
        .iter()
        .map(|v| {
            RegistryHost::parse(v)
                .map(|h| h.as_str().to_owned())
                .map_err(|e| StartError::Flag {
                    flag,
                    message: format!("{v:?}: {e}"),
                })
        })
        .collect()
}

/// The cloud identities' settings from the flags (and the environment the
/// clouds' identity webhooks set up).
fn cloud_settings(config: &Config) -> Result<CloudSettings, StartError> {
    let pod_identity = match (
        &config.aws_container_credentials_full_uri,
        &config.aws_container_authorization_token_file,
    ) {
        (Some(uri), Some(token_file)) => Some(
            PodIdentityAgent::new(uri, token_file.clone()).map_err(|e| StartError::Flag {
                flag: "--aws-container-credentials-full-uri",
                message: e.to_string(),
            })?,
        ),
        (Some(_), None) => {
            return Err(StartError::Flag {
                flag: "--aws-container-credentials-full-uri",
                message: "needs --aws-container-authorization-token-file (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)".into(),
            });
        }
        _ => None,
    };
    Ok(CloudSettings {
        azure: config
            .azure_federated_token_file
            .clone()
            .map(|token_file| AzureSettings {
                authority_host: config.azure_authority_host.clone(),
                token_file,
            }),
        azure_registry_domains: config.azure_registry_domain.clone(),
        aws: AwsSettings {
            web_identity_token_file: config.aws_web_identity_token_file.clone(),
            region: config.aws_region.clone(),
            pod_identity,
        },
        gcp: GcpSettings {
            federated_token_file: config.gcp_federated_token_file.clone(),
            metadata_host: config.gce_metadata_host.clone(),
        },
    })
}

async fn run(config: Config) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let store = Arc::new(PolicyStore::default());

    let mut extra_roots = Vec::new();
    if let Some(path) = &config.registry_ca {
        let file = |message: String| StartError::File {
            path: path.clone(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| file(e.to_string()))?;
        extra_roots =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| file(e.to_string()))?;
    }
    let budget = CacheBudget::split(config.cache_max_bytes);
    let client = RegistryClient::new(
        ClientSettings {
            insecure: registry_set("--insecure-registry", &config.insecure_registry)?,
            trusted_realms: registry_set("--trusted-token-realm", &config.trusted_token_realm)?,
            guard: Arc::new(DestinationGuard::new(
                config.allow_destination.iter().cloned(),
            )),
            request_timeout: config.registry_timeout,
            extra_roots,
            dns: DnsSettings {
                servers: config.dns_server.clone(),
                timeout: config.dns_timeout,
                overrides: config.resolve.clone(),
                ..DnsSettings::default()
            },
            max_in_flight: config.registry_max_in_flight,
            max_in_flight_per_registry: config.registry_max_in_flight_per_registry,
            token_cache_bytes: budget.tokens,
            ..ClientSettings::default()
        },
        metrics.clone(),
    )?;
    let lookup = ImageLookup::new(
        client.clone(),
        LookupSettings {
            fresh: config.cache_fresh,
            max_stale: config.cache_max_stale,
            no_findings: config.no_findings_ttl,
            max_cache_bytes: config.cache_max_bytes,
            max_platforms: config.max_platforms_per_index,
            max_artifacts: config.max_artifacts_per_image,
            ..LookupSettings::default()
        },
        metrics.clone(),
    );

    // Files (outside a cluster), or the API.
    let needs_kube = config.policy_dir.is_none();
    let kube_client = if needs_kube {
        Some(kube::Client::try_default().await?)
    } else {
        None
    };
    // Secrets named by --registry-config are read again when the file
    // changes; in a cluster, those RegistryAccesses name are watched by name.
    let secret_store = match (&config.registry_config, &kube_client) {
        (Some(path), _) => SecretStore::files(path.clone(), config.policy_reload_interval)
            .map_err(|message| StartError::File {
                path: path.clone(),
                message,
            })?,
        (None, Some(c)) => SecretStore::kube(c.clone(), Duration::from_secs(30)),
        (None, None) => SecretStore::empty(),
    };
    match (&config.policy_dir, &kube_client) {
        (Some(dir), _) => {
            let snapshot = policies::load_files(dir, config.registry_config.as_deref())?;
            metrics.set_policies(snapshot.policies.rules().len());
            metrics.policy_reload(true);
            tracing::info!(rules = snapshot.policies.rules().len(), dir = %dir.display(), "policies loaded from files");
            store.replace(snapshot);
            store.set_ready();
            tokio::spawn(policies::watch_files(
                dir.clone(),
                config.registry_config.clone(),
                store.clone(),
                metrics.clone(),
                config.policy_reload_interval,
            ));
        }
        (None, Some(c)) => {
            tokio::spawn(policies::run_reflectors(
                c.clone(),
                store.clone(),
                metrics.clone(),
                config.invalid_rule.into(),
            ));
        }
        (None, None) => return Err(StartError::NoPolicySource),
    }
    let events = kube_client.as_ref().map(|c| {
        EventSink::start(
            Recorder::new(
                c.clone(),
                Reporter {
                    controller: "portcullis-webhook".into(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            ),
            1024,
        )
    });
    let credentials =
        CredentialResolver::with_clouds(secret_store, cloud_settings(&config)?, client)?;
    let owner_trust = if config.controller_identity.is_empty() {
        OwnerTrust::default()
    } else {
        OwnerTrust {
            controllers: config.controller_identity.iter().cloned().collect(),
        }
    };
    let gate = Arc::new(Gate {
        store: store.clone(),
        lookup,
        credentials,
        failures: config.failure_actions(),
        deadline: config.deadline,
        limits: ReviewLimits {
            max_images: config.max_images_per_review,
            max_containers: config.max_containers_per_review,
            max_background_lookups: config.max_background_lookups,
            lookup_budget: config.registry_timeout * 8,
        },
        owner_trust,
        owners: kube_client
            .as_ref()
            .map(|c| OwnerVerifier::new(c.clone(), Duration::from_secs(30))),
        answer: AnswerOptions {
            audit_only: config.audit_only,
        },
        metrics: metrics.clone(),
        events,
        background: Arc::new(Semaphore::new(config.max_background_lookups.max(1))),
        references: ParsedReferences::default(),
    });
    let limits = ServerLimits {
        max_connections: config.max_connections,
        max_inflight_reviews: config.max_inflight_reviews,
        max_body_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        idle_timeout: config.idle_timeout,
        ..ServerLimits::default()
    };
    let state = AppState {
        gate,
        store,
        metrics,
        tls_ready: Arc::new(AtomicBool::new(false)),
        shutting_down: Arc::new(AtomicBool::new(false)),
        inflight: Arc::new(Semaphore::new(limits.max_inflight_reviews.max(1))),
        limits,
    };
    Ok(server::serve(&config, state).await?)
}
