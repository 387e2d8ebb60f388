//! Google Cloud: Artifact Registry and Container Registry credentials for a
//! Google service account (`GcpWorkloadIdentity`).
//!
//! - Federated (any cluster; the RegistryAccess names its
//!   `workloadIdentityProvider`): the projected ServiceAccount token → STS
//!   token exchange (audience: the provider) → IAM Credentials
//!   `generateAccessToken` for the service account.
//! - GKE Workload Identity (no provider named): the metadata server's token
//!   for that service account (`169.254.169.254`, `Metadata-Flavor: Google`),
//!   reached only by the identity client through an explicit exception.
//!
//! The access token is basic password of the user `oauth2accesstoken`, and
//! goes only to `*-docker.pkg.dev`, `gcr.io` and `*.gcr.io` on the default
//! port (among the hosts the RegistryAccess pattern matches).
//!
//! Hand-written over the guarded client: three JSON calls. The Google auth
//! crates (gcp_auth, google-cloud-auth) bring their own HTTP clients, which
//! the destination guard and `--resolve` would not cover.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use portcullis_core::pattern::HostGlob;
use portcullis_core::reference::RegistryHost;

use super::auth::Credentials;
use super::guard::AllowedDestination;
use super::identity::{IdentityError, IdentityHttp, TokenCache, form, read_token_file, until};
use crate::metrics::Metrics;

const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const STS: &str = "https://sts.googleapis.com/v1/token";
const IAM_CREDENTIALS: &str =
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/";
/// The metadata server's address.
pub const METADATA_HOST: &str = "169.254.169.254";

/// Google registries, the only hosts Google access tokens go to.
static GOOGLE_REGISTRIES: LazyLock<Vec<HostGlob>> = LazyLock::new(|| {
    ["*-docker.pkg.dev", "gcr.io", "*.gcr.io"]
        .into_iter()
        .filter_map(|p| HostGlob::parse(p, true).ok())
        .collect()
});

/// True for Artifact Registry and Container Registry hosts.
pub fn is_google_registry(host: &RegistryHost) -> bool {
    GOOGLE_REGISTRIES.iter().any(|g| g.matches(host))
}

/// GCP settings of the webhook.
#[derive(Debug, Clone)]
pub struct GcpSettings {
    /// Projected ServiceAccount token for workload identity federation.
    pub federated_token_file: Option<PathBuf>,
    /// The metadata server, `host[:port]` (`GCE_METADATA_HOST`).
    pub metadata_host: String,
}

impl Default for GcpSettings {
    fn default() -> Self {
        GcpSettings {
            federated_token_file: None,
            metadata_host: METADATA_HOST.into(),
        }
    }
}

impl GcpSettings {
    /// The guard exception for the metadata server (identity client only):
    /// its address (169.254.169.254, `[fd20:ce::254]`, `metadata.google.internal`,
    /// or loopback for a local stand-in) and port.
    pub fn metadata_exception(&self) -> Result<AllowedDestination, String> {
        let host = RegistryHost::parse(&self.metadata_host)
            .map_err(|e| format!("metadata host {:?}: {e}", self.metadata_host))?;
        let known = host.host() == "metadata.google.internal"
            || host.ip().is_some_and(|ip| {
                ip.is_loopback()
                    || ip == std::net::IpAddr::from([169, 254, 169, 254])
                    || ip == std::net::IpAddr::from([0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254])
            });
        if !known {
            return Err(format!(
                "metadata host {:?} is not the GCE metadata server (169.254.169.254, [fd20:ce::254], metadata.google.internal) or loopback",
                self.metadata_host
            ));
        }
        // Written without a port, the metadata server listens on 80.
        let port = if self.metadata_host.ends_with(']') || !self.metadata_host.contains(':') {
            80
        } else {
            host.port().unwrap_or(443)
        };
        Ok(AllowedDestination::Host {
            host: host.host().to_owned(),
            port: Some(port),
        })
    }

    fn metadata_base(&self) -> String {
        format!("http://{}", self.metadata_host)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Federated { account: String, provider: String },
    Metadata { account: String },
}

/// Google registry credentials for the webhook; cheap to clone.
#[derive(Clone)]
pub struct Gcp {
    settings: GcpSettings,
    http: IdentityHttp,
    tokens: TokenCache<Source, String>,
}

impl Gcp {
    /// Google credentials over `http`.
    pub fn new(settings: GcpSettings, http: IdentityHttp) -> Self {
        Gcp {
            settings,
            http,
            tokens: TokenCache::new(256),
        }
    }

    /// Basic credentials (`oauth2accesstoken`) for `registry` as the Google
    /// service account `account`; federated through `provider` when given,
    /// else from the GKE metadata server. A new access token is recorded in
    /// `metrics` for `registry_access`.
    pub async fn registry_credentials(
        &self,
        account: &str,
        provider: Option<&str>,
        registry: &RegistryHost,
        registry_access: &str,
        metrics: &Metrics,
    ) -> Result<Credentials, IdentityError> {
        if !is_google_registry(registry) {
            return Err(IdentityError::OutOfScope {
                registry: registry.to_string(),
                what: "Google",
                scope: "*-docker.pkg.dev, gcr.io and *.gcr.io".into(),
            });
        }
        let valid_account = !account.is_empty()
            && account.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'-' | b'_' | b'+')
            });
        if !valid_account {
            return Err(IdentityError::Settings(format!(
                "{account:?} is not a service account email"
            )));
        }
        let source = match provider {
            Some(p) => Source::Federated {
                account: account.to_owned(),
                provider: audience(p),
            },
            None => Source::Metadata {
                account: account.to_owned(),
            },
        };
        let token = self
            .tokens
            .get(source.clone(), async {
                let result = match &source {
                    Source::Federated { account, provider } => {
                        self.federated(account, provider).await
                    }
                    Source::Metadata { account } => self.metadata(account).await,
                };
                metrics.identity_exchange(registry_access, result.is_ok());
                result
            })
            .await?;
        Ok(Credentials::Basic {
            username: "oauth2accesstoken".into(),
            password: token,
        })
    }

    async fn federated(
        &self,
        account: &str,
        audience: &str,
    ) -> Result<(String, Duration), IdentityError> {
        let Some(file) = &self.settings.federated_token_file else {
            return Err(IdentityError::NotConfigured {
                what: "GCP workload identity federation",
                hint: "--gcp-federated-token-file, a projected ServiceAccount token with the provider as audience",
            });
        };
        let subject = read_token_file(file).await?;
        let sts = self
            .http
            .send(
                self.http
                    .request(reqwest::Method::POST, url(STS)?)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(&[
                        ("audience", audience),
                        (
                            "grant_type",
                            "urn:ietf:params:oauth:grant-type:token-exchange",
                        ),
                        (
                            "requested_token_type",
                            "urn:ietf:params:oauth:token-type:access_token",
                        ),
                        ("scope", CLOUD_PLATFORM),
                        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                        ("subject_token", &subject),
                    ])),
                STS,
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct StsAnswer {
            access_token: String,
        }
        let federated: StsAnswer = serde_json::from_slice(&sts)
            .map_err(|e| IdentityError::bad_answer(STS, e.to_string()))?;
        let endpoint = format!("{IAM_CREDENTIALS}{account}:generateAccessToken");
        let answer = self
            .http
            .send(
                self.http
                    .request(reqwest::Method::POST, url(&endpoint)?)
                    .bearer_auth(&federated.access_token)
                    .json(&serde_json::json!({"scope": [CLOUD_PLATFORM]})),
                &endpoint,
            )
            .await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct IamAnswer {
            access_token: String,
            expire_time: jiff::Timestamp,
        }
        let a: IamAnswer = serde_json::from_slice(&answer)
            .map_err(|e| IdentityError::bad_answer(&endpoint, e.to_string()))?;
        Ok((a.access_token, until(a.expire_time)))
    }

    async fn metadata(&self, account: &str) -> Result<(String, Duration), IdentityError> {
        let endpoint = format!(
            "{}/computeMetadata/v1/instance/service-accounts/{account}/token",
            self.settings.metadata_base()
        );
        let answer = self
            .http
            .send(
                self.http
                    .request(reqwest::Method::GET, url(&endpoint)?)
                    .header("metadata-flavor", "Google"),
                &endpoint,
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: u64,
        }
        let a: Answer = serde_json::from_slice(&answer)
            .map_err(|e| IdentityError::bad_answer(&endpoint, e.to_string()))?;
        Ok((a.access_token, Duration::from_secs(a.expires_in)))
    }
}

/// The STS audience of a workload identity provider:
/// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`.
pub fn audience(provider: &str) -> String {
    if provider.starts_with("//") {
        provider.to_owned()
    } else {
        format!("//iam.googleapis.com/{}", provider.trim_start_matches('/'))
    }
}

fn url(text: &str) -> Result<reqwest::Url, IdentityError> {
    reqwest::Url::parse(text).map_err(|e| IdentityError::Settings(format!("{text}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_tokens_go_only_to_google_registries() {
        let yes = [
            "us-docker.pkg.dev",
            "europe-west1-docker.pkg.dev",
            "gcr.io",
            "eu.gcr.io",
        ];
        let no = [
            "docker.pkg.dev",
            "us-docker.pkg.dev:5000",
            "us-docker.pkg.dev.evil.net",
            "evil-gcr.io",
            "a.b.gcr.io",
            "gcr.io.evil.net",
            "us-maven.pkg.dev",
            "registry.example.com",
        ];
        for h in yes {
            assert!(is_google_registry(&RegistryHost::parse(h).unwrap()), "{h}");
        }
        for h in no {
            assert!(!is_google_registry(&RegistryHost::parse(h).unwrap()), "{h}");
        }
    }

    #[test]
    fn provider_names_become_sts_audiences() {
        let p = "projects/123/locations/global/workloadIdentityPools/pool/providers/cluster";
        assert_eq!(audience(p), format!("//iam.googleapis.com/{p}"));
        assert_eq!(
            audience(&format!("//iam.googleapis.com/{p}")),
            format!("//iam.googleapis.com/{p}")
        );
    }

    #[test]
    fn the_metadata_exception_is_the_metadata_server_only() {
        let s = |h: &str| GcpSettings {
            federated_token_file: None,
            metadata_host: h.into(),
        };
        assert_eq!(
            s("169.254.169.254").metadata_exception(),
            Ok(AllowedDestination::Host {
                host: "169.254.169.254".into(),
                port: Some(80)
            })
        );
        assert_eq!(
            s("127.0.0.3:8080").metadata_exception(),
            Ok(AllowedDestination::Host {
                host: "127.0.0.3".into(),
                port: Some(8080)
            })
        );
        assert!(s("10.0.0.1").metadata_exception().is_err());
        assert!(s("metadata.evil.net").metadata_exception().is_err());
    }
}
