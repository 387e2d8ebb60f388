//! Command-line and environment configuration of `portcullis-webhook`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::engine::{Action, FailureActions, FailureClass};
use crate::registry::guard::AllowedDestination;

/// Portcullis admission webhook: admits, audits or denies Pods and workloads by
/// the vulnerability findings attached to their images in OCI registries.
///
/// Rules come from SecurityArtifactPolicy objects in the cluster, or from
/// files with --policy-dir. Every flag can also be set by the environment
/// variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "portcullis-webhook", version, about, long_about)]
pub struct Config {
    /// HTTPS address for AdmissionReviews (POST /validate).
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "PORTCULLIS_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,

    /// Serving certificate chain (PEM). Reloaded when it changes.
    #[arg(
        long,
        env = "PORTCULLIS_TLS_CERT",
        default_value = "/etc/portcullis/tls/tls.crt"
    )]
    pub tls_cert: PathBuf,

    /// Serving key (PEM). Reloaded when it changes.
    #[arg(
        long,
        env = "PORTCULLIS_TLS_KEY",
        default_value = "/etc/portcullis/tls/tls.key"
    )]
    pub tls_key: PathBuf,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "PORTCULLIS_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    /// Read SecurityArtifactPolicy YAML/JSON files from this directory instead of
    /// the Kubernetes API (outside a cluster, demos, tests). Other kinds are skipped.
    #[arg(long, env = "PORTCULLIS_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,

    /// How often --policy-dir and --registry-config are checked for changes
    /// (a change that does not load is logged and the rules in force kept).
    #[arg(long, env = "PORTCULLIS_POLICY_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub policy_reload_interval: Duration,

    /// Read RegistryAccess objects (and the Secrets and ServiceAccounts they use)
    /// from this file or directory instead of the Kubernetes API (with --policy-dir).
    #[arg(long, env = "PORTCULLIS_REGISTRY_CONFIG", requires = "policy_dir")]
    pub registry_config: Option<PathBuf>,

    /// Lift the destination guard for a network (CIDR) or a registry
    /// (HOST[:PORT]). Repeatable or comma-separated. By default link-local,
    /// loopback and private addresses are refused (BlockedDestination).
    #[arg(long, env = "PORTCULLIS_ALLOW_DESTINATION", value_delimiter = ',')]
    pub allow_destination: Vec<AllowedDestination>,

    /// Speak plain HTTP to this registry or token endpoint (HOST:PORT).
    /// Repeatable or comma-separated.
    #[arg(long, env = "PORTCULLIS_INSECURE_REGISTRY", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,

    /// A token realm host (HOST[:PORT]) that may receive a registry's basic
    /// credentials although it is another host. Repeatable.
    #[arg(long, env = "PORTCULLIS_TRUSTED_TOKEN_REALM", value_delimiter = ',')]
    pub trusted_token_realm: Vec<String>,

    /// Extra CA certificates (PEM file) trusted for registries.
    #[arg(long, env = "PORTCULLIS_REGISTRY_CA")]
    pub registry_ca: Option<PathBuf>,

    /// Answer budget per admission request; keep it below the webhook's
    /// timeoutSeconds. Lookups still running then are answered with the
    /// RegistryUnavailable action (and go on filling the cache).
    #[arg(long, env = "PORTCULLIS_DEADLINE", default_value = "3s", value_parser = parse_duration)]
    pub deadline: Duration,

    /// Time limit of one registry request.
    #[arg(long, env = "PORTCULLIS_REGISTRY_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub registry_timeout: Duration,

    /// Largest AdmissionReview accepted (bytes); larger ones get 413.
    #[arg(long, env = "PORTCULLIS_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How long tag → digest and referrer lists are fresh.
    #[arg(long, env = "PORTCULLIS_CACHE_FRESH", default_value = "60s", value_parser = parse_duration)]
    pub cache_fresh: Duration,

    /// How long after that a cached entry is still served while it is refreshed.
    #[arg(long, env = "PORTCULLIS_CACHE_MAX_STALE", default_value = "10m", value_parser = parse_duration)]
    pub cache_max_stale: Duration,

    /// How long "no findings attached" is believed.
    #[arg(long, env = "PORTCULLIS_NO_FINDINGS_TTL", default_value = "10s", value_parser = parse_duration)]
    pub no_findings_ttl: Duration,

    /// Findings kept in the cache (all images together).
    #[arg(
        long,
        env = "PORTCULLIS_CACHE_MAX_FINDINGS",
        default_value_t = 8_000_000
    )]
    pub cache_max_findings: u64,

    /// Action when no findings are attached (rules with blockUnscannedImages act too).
    #[arg(long, env = "PORTCULLIS_ON_NO_FINDINGS", default_value = "allow")]
    pub on_no_findings: FailureAction,
    /// Action when findings are older than a rule's maximumAge.
    #[arg(long, env = "PORTCULLIS_ON_STALE_FINDINGS", default_value = "allow")]
    pub on_stale_findings: FailureAction,
    /// Action when findings exist but cannot be read.
    #[arg(
        long,
        env = "PORTCULLIS_ON_MALFORMED_FINDINGS",
        default_value = "audit"
    )]
    pub on_malformed_findings: FailureAction,
    /// Action when the image does not exist.
    #[arg(long, env = "PORTCULLIS_ON_IMAGE_NOT_FOUND", default_value = "audit")]
    pub on_image_not_found: FailureAction,
    /// Action when the registry refuses access.
    #[arg(long, env = "PORTCULLIS_ON_REGISTRY_AUTH", default_value = "audit")]
    pub on_registry_auth: FailureAction,
    /// Action when the registry throttles (429).
    #[arg(
        long,
        env = "PORTCULLIS_ON_REGISTRY_THROTTLED",
        default_value = "audit"
    )]
    pub on_registry_throttled: FailureAction,
    /// Action when the registry times out, fails or answers 5xx.
    #[arg(
        long,
        env = "PORTCULLIS_ON_REGISTRY_UNAVAILABLE",
        default_value = "audit"
    )]
    pub on_registry_unavailable: FailureAction,
    /// Action when an image reference does not parse.
    #[arg(long, env = "PORTCULLIS_ON_INVALID_REFERENCE", default_value = "deny")]
    pub on_invalid_reference: FailureAction,
    /// Action when an image names a refused address.
    #[arg(
        long,
        env = "PORTCULLIS_ON_BLOCKED_DESTINATION",
        default_value = "deny"
    )]
    pub on_blocked_destination: FailureAction,

    /// Entra ID authority for Azure workload identity.
    #[arg(
        long,
        env = "AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com/"
    )]
    pub azure_authority_host: String,

    /// Projected ServiceAccount token for Azure workload identity (set by the
    /// workload identity webhook in AKS).
    #[arg(long, env = "AZURE_FEDERATED_TOKEN_FILE")]
    pub azure_federated_token_file: Option<PathBuf>,

    /// Log filter (tracing EnvFilter syntax, e.g. `info,portcullis=debug`).
    #[arg(long, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

/// A failure class's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailureAction {
    /// Admit silently.
    Allow,
    /// Admit with a warning, an Event and a log line.
    Audit,
    /// Reject.
    Deny,
}

impl From<FailureAction> for Action {
    fn from(a: FailureAction) -> Self {
        match a {
            FailureAction::Allow => Action::Allow,
            FailureAction::Audit => Action::Audit,
            FailureAction::Deny => Action::Deny,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Text,
}

impl Config {
    /// The action per failure class.
    pub fn failure_actions(&self) -> FailureActions {
        let mut f = FailureActions::default();
        for (class, action) in [
            (FailureClass::NoFindings, self.on_no_findings),
            (FailureClass::StaleFindings, self.on_stale_findings),
            (FailureClass::MalformedFindings, self.on_malformed_findings),
            (FailureClass::ImageNotFound, self.on_image_not_found),
            (FailureClass::RegistryAuth, self.on_registry_auth),
            (FailureClass::RegistryThrottled, self.on_registry_throttled),
            (
                FailureClass::RegistryUnavailable,
                self.on_registry_unavailable,
            ),
            (FailureClass::InvalidReference, self.on_invalid_reference),
            (
                FailureClass::BlockedDestination,
                self.on_blocked_destination,
            ),
        ] {
            f.set(class, action.into());
        }
        f
    }
}

/// Parses `500ms`, `3s`, `10m`, `1h` (jiff's friendly duration format).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 500ms, 3s or 10m: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?}: a duration cannot be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn durations_and_failure_actions() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("soon").is_err());
        let c = Config::try_parse_from([
            "portcullis-webhook",
            "--on-registry-unavailable=deny",
            "--allow-destination=127.0.0.0/8,registry.local:5000",
        ])
        .unwrap();
        let f = c.failure_actions();
        assert_eq!(f.get(FailureClass::RegistryUnavailable), Action::Deny);
        assert_eq!(f.get(FailureClass::NoFindings), Action::Allow);
        assert_eq!(c.allow_destination.len(), 2);
        assert!(Config::try_parse_from(["portcullis-webhook", "--deadline=fast"]).is_err());
    }
}
