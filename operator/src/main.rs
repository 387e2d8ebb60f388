//! `portcullis-operator`: start-up only; see the library for the controllers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures::StreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use portcullis_crds::{RegistryAccess, RuleSource, SecurityArtifactPolicy, TrustedProducer};
use portcullis_operator::certificates::{CertSettings, reconcile_certificates};
use portcullis_operator::check_crds;
use portcullis_operator::default_rule::ensure_default_rule;
use portcullis_operator::identity::{self, IdentityContext, WebhookIdentity};
use portcullis_operator::leadership::Leadership;
use portcullis_operator::metrics::Metrics;
use portcullis_operator::policy_status::{self, PolicyStatusContext};
use portcullis_operator::producer_status::{self, ProducerStatusContext};
use portcullis_operator::rule_source::{self, Context};
use portcullis_runtime::admin;
use portcullis_runtime::flags::parse_positive_duration;
use portcullis_runtime::http::{ConnectionLimits, Unobserved, accept_loop};
use portcullis_runtime::logging::LogArgs;

/// Portcullis operator: syncs RuleSources (a rules endpoint or a ConfigMap)
/// into SecurityArtifactPolicy objects. Every flag can also be set by the
/// environment variable shown.
#[derive(Debug, Parser)]
#[command(name = "portcullis-operator", version, about, long_about)]
struct Config {
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "PORTCULLIS_METRICS_LISTEN",
        default_value = "0.0.0.0:9091"
    )]
    metrics_listen: SocketAddr,
    /// Time limit of one portal fetch (500ms, 10s, 1m: the webhook's duration syntax).
    #[arg(long, env = "PORTCULLIS_FETCH_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    fetch_timeout: Duration,
    /// Who issues the webhook's serving certificate: the operator (CA and
    /// certificate in --webhook-secret, caBundle patched, rotation), or
    /// cert-manager (the operator leaves both alone).
    #[arg(long, env = "PORTCULLIS_CERTIFICATES", default_value = "operator")]
    certificates: CertificateIssuer,
    /// Namespace of the webhook Service and its TLS Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "portcullis")]
    namespace: String,
    /// The webhook's TLS Secret.
    #[arg(
        long,
        env = "PORTCULLIS_WEBHOOK_SECRET",
        default_value = "portcullis-webhook-tls"
    )]
    webhook_secret: String,
    /// The webhook's Service (the certificate's DNS names).
    #[arg(
        long,
        env = "PORTCULLIS_WEBHOOK_SERVICE",
        default_value = "portcullis-webhook"
    )]
    webhook_service: String,
    /// The ValidatingWebhookConfiguration whose caBundle is kept current.
    #[arg(
        long,
        env = "PORTCULLIS_WEBHOOK_CONFIGURATION",
        default_value = "portcullis-webhook"
    )]
    webhook_configuration: String,
    /// Lifetime of a CA and serving certificate, in days.
    #[arg(long, env = "PORTCULLIS_CERT_VALIDITY_DAYS", default_value_t = 90)]
    cert_validity_days: u64,
    /// Rotate when the serving certificate has fewer days left than this.
    #[arg(long, env = "PORTCULLIS_CERT_RENEW_BEFORE_DAYS", default_value_t = 30)]
    cert_renew_before_days: u64,
    /// Create the default rule (audit High and Critical cluster-wide) when it
    /// does not exist; it is created once and never overwritten.
    #[arg(long, env = "PORTCULLIS_DEFAULT_RULE", default_value_t = true, action = clap::ArgAction::Set)]
    default_rule: bool,
    /// Elect a leader on a Lease so that several replicas can run; only the
    /// leader writes. Disable only with a single replica.
    #[arg(long, env = "PORTCULLIS_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the Lease (in --namespace).
    #[arg(
        long,
        env = "PORTCULLIS_LEASE_NAME",
        default_value = "portcullis-operator"
    )]
    lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "portcullis-operator")]
    identity: String,
    /// The webhook's ServiceAccount (annotated for federated identity).
    #[arg(
        long,
        env = "PORTCULLIS_WEBHOOK_SERVICE_ACCOUNT",
        default_value = "portcullis-webhook"
    )]
    webhook_service_account: String,
    /// The webhook's Deployment (labelled for Azure workload identity).
    #[arg(
        long,
        env = "PORTCULLIS_WEBHOOK_DEPLOYMENT",
        default_value = "portcullis-webhook"
    )]
    webhook_deployment: String,
    /// Logging.
    #[command(flatten)]
    logging: LogArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CertificateIssuer {
    Operator,
    CertManager,
}

/// Why the operator cannot start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// No API server.
    #[error("connecting to the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The CRDs are missing.
    #[error(transparent)]
    Crds(#[from] portcullis_operator::CrdCheckError),
    /// The metrics registry refused a metric.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The admin address cannot be bound.
    #[error("{addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Leader election could not start.
    #[error("leader election on Lease {lease}: {message}")]
    Lease {
        /// `namespace/name`.
        lease: String,
        /// Why.
        message: String,
    },
}

fn main() -> ExitCode {
    let config = Config::parse();
    portcullis_runtime::logging::init(&config.logging);
    portcullis_runtime::process::run("portcullis-operator", run(config))
}

async fn run(config: Config) -> Result<(), StartError> {
    let client = kube::Client::try_default().await?;
    // Fail early and clearly when the CRDs are missing.
    check_crds(&client).await?;
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    // /healthz, /readyz, /metrics on the same bounded server as the webhook's.
    let listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.metrics_listen,
            source,
        })?;
    let (_stop_admin, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(accept_loop(
        listener,
        None,
        ConnectionLimits::default(),
        32,
        stop,
        Arc::new(Unobserved),
        {
            let (ready, metrics) = (ready.clone(), metrics.clone());
            move |req| {
                let response = admin::respond(
                    &req,
                    || {
                        if ready.load(Ordering::Acquire) {
                            Vec::new()
                        } else {
                            vec!["starting"]
                        }
                    },
                    || metrics.render(),
                );
                async move { response }
            }
        },
    ));

    let leader = if config.leader_elect {
        let leader = Leadership::follower();
        leader
            .follow_lease(
                client.clone(),
                &config.namespace,
                &config.lease_name,
                &config.identity,
            )
            .await
            .map_err(|e| StartError::Lease {
                lease: format!("{}/{}", config.namespace, config.lease_name),
                message: e.to_string(),
            })?;
        leader
    } else {
        Leadership::always()
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics,
        recorder: Some(Recorder::new(
            client.clone(),
            Reporter {
                controller: "portcullis-operator".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        )),
        fetch_timeout: config.fetch_timeout,
        leader: leader.clone(),
    });
    if config.certificates == CertificateIssuer::Operator {
        let settings = CertSettings {
            namespace: config.namespace.clone(),
            secret: config.webhook_secret.clone(),
            service: config.webhook_service.clone(),
            webhook_configuration: config.webhook_configuration.clone(),
            validity: Duration::from_secs(config.cert_validity_days * 86_400),
            renew_before: Duration::from_secs(config.cert_renew_before_days * 86_400),
        };
        tokio::spawn(keep_certificates(
            client.clone(),
            settings,
            ctx.metrics.clone(),
            leader.clone(),
        ));
    }
    if config.default_rule {
        tokio::spawn(keep_default_rule(client.clone(), leader.clone()));
    }
    let access_controller = Controller::new(
        Api::<RegistryAccess>::all(client.clone()),
        watcher::Config::default(),
    );
    let all_access = access_controller.store();
    let identity = Arc::new(IdentityContext {
        client: client.clone(),
        webhook: WebhookIdentity {
            namespace: config.namespace.clone(),
            service_account: config.webhook_service_account.clone(),
            deployment: config.webhook_deployment.clone(),
        },
        metrics: ctx.metrics.clone(),
        leader: leader.clone(),
        all: all_access.clone(),
    });
    let access_controller = access_controller
        // A change to one RegistryAccess can start or end a conflict with
        // the others: they are reconciled again too.
        .watches(
            Api::<RegistryAccess>::all(client.clone()),
            watcher::Config::default(),
            move |changed: RegistryAccess| {
                all_access
                    .state()
                    .iter()
                    .filter(|o| o.name_any() != changed.name_any())
                    .map(|o| ObjectRef::from_obj(&**o))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(identity::reconcile, identity::error_policy, identity)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "registryaccess reconcile");
            }
        });
    tokio::spawn(access_controller);
    let policy_status = Arc::new(PolicyStatusContext {
        client: client.clone(),
        metrics: ctx.metrics.clone(),
        leader: leader.clone(),
    });
    let policy_controller = Controller::new(
        Api::<SecurityArtifactPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(
        policy_status::reconcile,
        policy_status::error_policy,
        policy_status,
    )
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "securityartifactpolicy status reconcile");
        }
    });
    tokio::spawn(policy_controller);
    let producer_status = Arc::new(ProducerStatusContext {
        client: client.clone(),
        metrics: ctx.metrics.clone(),
        leader: leader.clone(),
    });
    let producer_controller = Controller::new(
        Api::<TrustedProducer>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(
        producer_status::reconcile,
        producer_status::error_policy,
        producer_status,
    )
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "trustedproducer status reconcile");
        }
    });
    tokio::spawn(producer_controller);
    ready.store(true, Ordering::Release);
    tracing::info!("portcullis-operator running");
    Controller::new(
        Api::<RuleSource>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<SecurityArtifactPolicy>::all(client),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(
        rule_source::reconcile,
        rule_source::error_policy,
        ctx.clone(),
    )
    .for_each(|result| {
        let metrics = ctx.metrics.clone();
        async move {
            if let Err(e) = result {
                rule_source::observe_controller_error(&metrics, &e);
                tracing::debug!(error = %e, "reconcile");
            }
        }
    })
    .await;
    tracing::info!("portcullis-operator stopped");
    Ok(())
}

/// Checks the webhook certificate every ten minutes (renewal windows are days
/// long; a missed check costs nothing).
async fn keep_certificates(
    client: kube::Client,
    settings: CertSettings,
    metrics: Arc<Metrics>,
    leader: Leadership,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        if !leader.is_leader() {
            // Only the leader checks the certificate; a follower's value
            // would be stale.
            metrics.forget_certificate_expiry();
            continue;
        }
        let started = std::time::Instant::now();
        match reconcile_certificates(
            &client,
            &settings,
            &metrics,
            time::OffsetDateTime::now_utc(),
        )
        .await
        {
            Ok(outcome) => tracing::info!(?outcome, "webhook certificate checked"),
            Err(e) => {
                metrics.failed("certificates", "error");
                tracing::warn!(error = %e, "webhook certificate check failed");
            }
        }
        metrics.reconciled("certificates", started.elapsed());
    }
}

/// Makes sure the default rule exists once this replica leads.
async fn keep_default_rule(client: kube::Client, leader: Leadership) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        if !leader.is_leader() {
            continue;
        }
        match ensure_default_rule(&client).await {
            Ok(outcome) => {
                tracing::info!(?outcome, "default rule checked");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not check the default rule; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_webhook_syntax() {
        for (flag, want) in [("10s", 10_000), ("500ms", 500), ("1m30s", 90_000)] {
            let config =
                Config::try_parse_from(["portcullis-operator", &format!("--fetch-timeout={flag}")])
                    .unwrap();
            assert_eq!(config.fetch_timeout, Duration::from_millis(want));
        }
        for bad in ["10", "", "ten seconds", "-5s", "0s"] {
            let arg = format!("--fetch-timeout={bad}");
            assert!(
                Config::try_parse_from(["portcullis-operator", &arg]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn default_fetch_timeout_parses() {
        let config = Config::try_parse_from(["portcullis-operator"]).unwrap();
        assert_eq!(config.fetch_timeout, Duration::from_secs(10));
        assert!(Config::try_parse_from(["portcullis-operator", "--fetch-timeout=10"]).is_err());
    }
}
