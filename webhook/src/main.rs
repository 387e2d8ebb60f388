//! `portcullis-webhook`: start-up only; see the library for everything else.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use kube::runtime::events::{Recorder, Reporter};
use portcullis_webhook::config::{Config, LogFormat};
use portcullis_webhook::gate::Gate;
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::policies::{self, FileObjects, PolicyStore};
use portcullis_webhook::registry::access::{AzureSettings, CredentialResolver, SecretStore};
use portcullis_webhook::registry::guard::DestinationGuard;
use portcullis_webhook::registry::lookup::{ImageLookup, LookupSettings};
use portcullis_webhook::registry::{ClientSettings, RegistryClient};
use portcullis_webhook::server::{self, AppState};

fn main() -> ExitCode {
    let config = Config::parse();
    init_logging(&config);
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("portcullis-webhook: a TLS crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis-webhook: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "portcullis-webhook stopped");
            eprintln!("portcullis-webhook: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(config: Config) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let store = Arc::new(PolicyStore::default());

    let mut extra_roots = Vec::new();
    if let Some(path) = &config.registry_ca {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        extra_roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let client = RegistryClient::new(
        ClientSettings {
            insecure: config
                .insecure_registry
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            trusted_realms: config
                .trusted_token_realm
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            guard: Arc::new(DestinationGuard::new(
                config.allow_destination.iter().cloned(),
            )),
            request_timeout: config.registry_timeout,
            extra_roots,
            ..ClientSettings::default()
        },
        metrics.clone(),
    )
    .map_err(|e| e.to_string())?;
    let lookup = ImageLookup::new(
        client.clone(),
        LookupSettings {
            fresh: config.cache_fresh,
            max_stale: config.cache_max_stale,
            no_findings: config.no_findings_ttl,
            max_cached_findings: config.cache_max_findings,
            ..LookupSettings::default()
        },
        metrics.clone(),
    );

    // Files (outside a cluster), or the API.
    let needs_kube = config.policy_dir.is_none();
    let kube_client = if needs_kube {
        Some(
            kube::Client::try_default()
                .await
                .map_err(|e| format!("connecting to the Kubernetes API (use --policy-dir and --registry-config outside a cluster): {e}"))?,
        )
    } else {
        None
    };
    let file_access = match &config.registry_config {
        Some(path) => Some(FileObjects::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    // Secrets named by --registry-config are read once, at start.
    let secret_store = match (&file_access, &kube_client) {
        (Some(f), _) => f.secret_store(),
        (None, Some(c)) => SecretStore::kube(c.clone(), Duration::from_secs(30)),
        (None, None) => SecretStore::empty(),
    };
    match (&config.policy_dir, &kube_client) {
        (Some(dir), _) => {
            let snapshot = policies::load_files(dir, config.registry_config.as_deref())?;
            metrics.set_policies(snapshot.policies.rules().len());
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
            ));
        }
        (None, None) => return Err("no policy source".into()),
    }
    let recorder = kube_client.as_ref().map(|c| {
        Recorder::new(
            c.clone(),
            Reporter {
                controller: "portcullis-webhook".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        )
    });
    let credentials = CredentialResolver::new(
        secret_store,
        config
            .azure_federated_token_file
            .clone()
            .map(|token_file| AzureSettings {
                authority_host: config.azure_authority_host.clone(),
                token_file,
            }),
        client,
    );
    let gate = Arc::new(Gate {
        store: store.clone(),
        lookup,
        credentials,
        failures: config.failure_actions(),
        deadline: config.deadline,
        metrics: metrics.clone(),
        recorder,
        references: portcullis_webhook::gate::reference_cache(),
    });
    let state = AppState {
        gate,
        store,
        metrics,
        tls_ready: Arc::new(AtomicBool::new(false)),
    };
    server::serve(&config, state)
        .await
        .map_err(|e| e.to_string())
}
