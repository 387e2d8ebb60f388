//! Command-line and environment configuration of `portcullis-webhook`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use portcullis_runtime::flags::{parse_bytes, parse_duration, parse_positive_duration};
use portcullis_runtime::logging::LogArgs;

use crate::engine::{Action, FailureActions, FailureClass};
use crate::policies::InvalidRulePolicy;
use crate::registry::dns::ResolveOverride;
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
    #[arg(long, env = "PORTCULLIS_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
    pub tls_reload_interval: Duration,

    /// Read SecurityArtifactPolicy YAML/JSON files from this directory instead of
    /// the Kubernetes API (outside a cluster, demos, tests). Other kinds are skipped.
    #[arg(long, env = "PORTCULLIS_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,

    /// How often --policy-dir and --registry-config are checked for changes
    /// (a change that does not load is logged and the rules in force kept).
    #[arg(long, env = "PORTCULLIS_POLICY_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
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
    #[arg(long, env = "PORTCULLIS_DEADLINE", default_value = "3s", value_parser = parse_positive_duration)]
    pub deadline: Duration,

    /// Time limit of one registry request.
    #[arg(long, env = "PORTCULLIS_REGISTRY_TIMEOUT", default_value = "2s", value_parser = parse_positive_duration)]
    pub registry_timeout: Duration,

    /// Largest AdmissionReview accepted (bytes); larger ones get 413.
    #[arg(long, env = "PORTCULLIS_MAX_BODY_BYTES", default_value = "4Mi", value_parser = parse_bytes)]
    pub max_body_bytes: u64,

    /// Open HTTPS connections at most; further ones are closed at once (the
    /// health port has its own pool, so probes keep answering).
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,

    /// Reviews judged at once; further ones get 503 (the API server's
    /// failurePolicy then decides).
    #[arg(long, env = "PORTCULLIS_MAX_INFLIGHT_REVIEWS", default_value_t = 256)]
    pub max_inflight_reviews: usize,

    /// Time to receive a request's head (slowloris).
    #[arg(long, env = "PORTCULLIS_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// Time to receive a request's body.
    #[arg(long, env = "PORTCULLIS_BODY_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub body_timeout: Duration,

    /// A connection on which nothing moves for this long is closed.
    #[arg(long, env = "PORTCULLIS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    /// Require API-server client certificates signed by this CA (PEM). The
    /// API server presents one when its admission configuration names it.
    #[arg(long, env = "PORTCULLIS_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// On SIGTERM, keep serving this long (readiness already false) before
    /// closing listeners, so no rollout leaves the API server without a
    /// ready endpoint.
    #[arg(long, env = "PORTCULLIS_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Audit-first rollout: every Deny acts as Audit, and the warning says
    /// what would have been denied.
    #[arg(long, env = "PORTCULLIS_AUDIT_ONLY")]
    pub audit_only: bool,

    /// Distinct images judged per review; more is LimitExceeded.
    #[arg(long, env = "PORTCULLIS_MAX_IMAGES_PER_REVIEW", default_value_t = 64)]
    pub max_images_per_review: usize,

    /// Containers and image volumes judged per review; more is LimitExceeded.
    #[arg(
        long,
        env = "PORTCULLIS_MAX_CONTAINERS_PER_REVIEW",
        default_value_t = 256
    )]
    pub max_containers_per_review: usize,

    /// Findings candidates examined per manifest, after SBOMs, unsigned VEX
    /// and signatures are set aside; more is LimitExceeded (so pushing many
    /// artifacts cannot hide the one that counts).
    #[arg(long, env = "PORTCULLIS_MAX_ARTIFACTS_PER_IMAGE", default_value_t = 32)]
    pub max_artifacts_per_image: usize,

    /// Platforms judged per image index; more is LimitExceeded.
    #[arg(long, env = "PORTCULLIS_MAX_PLATFORMS_PER_INDEX", default_value_t = 32)]
    pub max_platforms_per_index: usize,

    /// Registry lookups running at once in the background (they outlive the
    /// review that started them); beyond it images are answered as
    /// RegistryUnavailable at once.
    #[arg(
        long,
        env = "PORTCULLIS_MAX_BACKGROUND_LOOKUPS",
        default_value_t = 4096
    )]
    pub max_background_lookups: usize,

    /// Registry requests in flight at once, all registries together.
    #[arg(long, env = "PORTCULLIS_REGISTRY_MAX_IN_FLIGHT", default_value_t = 256)]
    pub registry_max_in_flight: usize,

    /// Registry requests in flight at once to one registry.
    #[arg(
        long,
        env = "PORTCULLIS_REGISTRY_MAX_IN_FLIGHT_PER_REGISTRY",
        default_value_t = 32
    )]
    pub registry_max_in_flight_per_registry: usize,

    /// DNS servers (IP:PORT) for registry names; repeatable. Default: the
    /// system's (/etc/resolv.conf). Resolution is asynchronous and bounded.
    #[arg(long, env = "PORTCULLIS_DNS_SERVER", value_delimiter = ',')]
    pub dns_server: Vec<SocketAddr>,

    /// Resolve HOST to ADDR (IP or IP:PORT) without DNS, like curl's
    /// --resolve; repeatable. For tests and air-gapped installations: the
    /// destination guard still judges ADDR, and a port replaces the default
    /// port of URLs that name none.
    #[arg(
        long,
        env = "PORTCULLIS_RESOLVE",
        value_delimiter = ',',
        value_name = "HOST=ADDR"
    )]
    pub resolve: Vec<ResolveOverride>,

    /// Time limit of one DNS lookup.
    #[arg(long, env = "PORTCULLIS_DNS_TIMEOUT", default_value = "2s", value_parser = parse_positive_duration)]
    pub dns_timeout: Duration,

    /// Requesting users (userInfo.username) whose ownerReferences count for
    /// Workload matchers and exemptions; repeatable. Default: the
    /// kube-controller-manager and its workload controllers' ServiceAccounts.
    #[arg(long, env = "PORTCULLIS_CONTROLLER_IDENTITY", value_delimiter = ',')]
    pub controller_identity: Vec<String>,

    /// What an invalid SecurityArtifactPolicy from the API does until it is
    /// fixed: `deny` (an invalid Deny rule denies its whole scope, an invalid
    /// Audit rule audits it), `audit` (both audit), or `ignore` (left out:
    /// fails open).
    #[arg(long, env = "PORTCULLIS_INVALID_RULE", default_value = "deny")]
    pub invalid_rule: InvalidRuleArg,

    /// How long tag → digest and referrer lists are fresh.
    #[arg(long, env = "PORTCULLIS_CACHE_FRESH", default_value = "60s", value_parser = parse_duration)]
    pub cache_fresh: Duration,

    /// How long after that a cached entry is still served while it is refreshed.
    #[arg(long, env = "PORTCULLIS_CACHE_MAX_STALE", default_value = "10m", value_parser = parse_duration)]
    pub cache_max_stale: Duration,

    /// How long "no findings attached" is believed.
    #[arg(long, env = "PORTCULLIS_NO_FINDINGS_TTL", default_value = "10s", value_parser = parse_duration)]
    pub no_findings_ttl: Duration,

    /// Memory for all caches together (tags, referrers, manifests, findings,
    /// tokens), e.g. `128Mi`. The default plus the process at rest fits the
    /// 256 MiB memory limit of the shipped manifests.
    #[arg(long, env = "PORTCULLIS_CACHE_MAX_BYTES", default_value = "128Mi", value_parser = parse_bytes)]
    pub cache_max_bytes: u64,

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
    /// Action when a request has more images, platforms or artifacts than
    /// the limits above allow.
    #[arg(long, env = "PORTCULLIS_ON_LIMIT_EXCEEDED", default_value = "deny")]
    pub on_limit_exceeded: FailureAction,
    /// Action when findings are attached but none is verified for a rule's
    /// trusted producers (rules with blockUnscannedImages act too).
    #[arg(
        long,
        env = "PORTCULLIS_ON_UNTRUSTED_FINDINGS",
        default_value = "audit"
    )]
    pub on_untrusted_findings: FailureAction,

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

    /// ACR domains besides azurecr.io, azurecr.cn and azurecr.us (sovereign
    /// or private clouds); Entra tokens go only to `*.<domain>` registries.
    #[arg(long, env = "PORTCULLIS_AZURE_REGISTRY_DOMAIN", value_delimiter = ',')]
    pub azure_registry_domain: Vec<String>,

    /// IRSA's projected ServiceAccount token (set by EKS when the
    /// ServiceAccount has the eks.amazonaws.com/role-arn annotation).
    #[arg(long, env = "AWS_WEB_IDENTITY_TOKEN_FILE")]
    pub aws_web_identity_token_file: Option<PathBuf>,

    /// Region whose STS endpoint is used (set by EKS); else the ECR
    /// registry's region.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// EKS Pod Identity agent URL (set by EKS), used when there is no web
    /// identity token. Only the identity client may reach it.
    #[arg(long, env = "AWS_CONTAINER_CREDENTIALS_FULL_URI")]
    pub aws_container_credentials_full_uri: Option<String>,

    /// EKS Pod Identity's ServiceAccount token (set by EKS).
    #[arg(long, env = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")]
    pub aws_container_authorization_token_file: Option<PathBuf>,

    /// Projected ServiceAccount token (audience: the workload identity
    /// provider) for GCP workload identity federation.
    #[arg(long, env = "PORTCULLIS_GCP_FEDERATED_TOKEN_FILE")]
    pub gcp_federated_token_file: Option<PathBuf>,

    /// The GKE/GCE metadata server (HOST[:PORT]); only the identity client
    /// may reach it.
    #[arg(long, env = "GCE_METADATA_HOST", default_value = "169.254.169.254")]
    pub gce_metadata_host: String,

    /// Logging.
    #[command(flatten)]
    pub logging: LogArgs,
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

/// `--invalid-rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InvalidRuleArg {
    /// Fail closed: an invalid Deny rule denies its scope.
    Deny,
    /// Audit the scope of any invalid rule.
    Audit,
    /// Leave invalid rules out (fails open).
    Ignore,
}

impl From<InvalidRuleArg> for InvalidRulePolicy {
    fn from(a: InvalidRuleArg) -> Self {
        match a {
            InvalidRuleArg::Deny => InvalidRulePolicy::Deny,
            InvalidRuleArg::Audit => InvalidRulePolicy::Audit,
            InvalidRuleArg::Ignore => InvalidRulePolicy::Ignore,
        }
    }
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
            (FailureClass::LimitExceeded, self.on_limit_exceeded),
            (FailureClass::UntrustedFindings, self.on_untrusted_findings),
        ] {
            f.set(class, action.into());
        }
        f
    }
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
        assert!(Config::try_parse_from(["portcullis-webhook", "--deadline=0s"]).is_err());
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
        assert_eq!(f.get(FailureClass::LimitExceeded), Action::Deny);
        assert!(
            Config::try_parse_from(["portcullis-webhook", "--cache-max-bytes=12 parsecs"]).is_err()
        );
    }
}
