//! Azure: ACR credentials from Microsoft Entra workload identity
//! (`AzureWorkloadIdentity`).
//!
//! The projected ServiceAccount token → Entra access token (client
//! assertion) → ACR refresh token (`POST https://<registry>/oauth2/exchange`),
//! used as the password of ACR's null user; the registry's own token
//! endpoint turns it into access tokens through the usual challenge.
//!
//! The Entra access token is valid for every registry the identity can
//! read, so it goes only to the Entra authority and to ACR hosts
//! (`*.azurecr.io`, `*.azurecr.cn`, `*.azurecr.us` and the domains given
//! with `--azure-registry-domain`, default port) that the RegistryAccess
//! pattern matches; the exchange goes through the registry client (the
//! guard without the identity exceptions).
//!
//! Hand-written: two form posts. `azure_identity` brings its own HTTP
//! pipeline, which the destination guard and `--resolve` would not cover.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use portcullis_core::pattern::HostGlob;
use portcullis_core::reference::RegistryHost;

use super::auth::Credentials;
use super::client::RegistryClient;
use super::identity::{
    IdentityError, IdentityHttp, TokenCache, form, read_answer, read_token_file, transport, until,
};
use crate::metrics::Metrics;

/// ACR's user name for refresh tokens.
pub const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";

/// ACR's domains in the public, China and US Government clouds.
pub const ACR_DOMAINS: &[&str] = &["azurecr.io", "azurecr.cn", "azurecr.us"];

/// How long an ACR refresh token is used when it does not say (they are
/// valid for about three hours).
const REFRESH_TOKEN_DEFAULT: Duration = Duration::from_secs(60 * 60);

/// Azure workload identity settings (endpoints configurable for tests and
/// sovereign clouds).
#[derive(Debug, Clone)]
pub struct AzureSettings {
    /// Entra authority, e.g. `https://login.microsoftonline.com/`.
    pub authority_host: String,
    /// The projected ServiceAccount token file.
    pub token_file: PathBuf,
}

/// Which hosts are ACR registries.
#[derive(Debug, Clone)]
pub struct AcrDomains(Vec<HostGlob>);

impl AcrDomains {
    /// ACR's own domains plus `extra` (sovereign or private clouds, e.g.
    /// `azurecr.example.gov`).
    pub fn new(extra: &[String]) -> Result<Self, String> {
        ACR_DOMAINS
            .iter()
            .map(|d| (*d).to_owned())
            .chain(
                extra
                    .iter()
                    .map(|d| d.trim().trim_start_matches("*.").to_owned()),
            )
            .map(|d| {
                HostGlob::parse(&format!("*.{d}"), true)
                    .map_err(|e| format!("ACR domain {d:?}: {e}"))
            })
            .collect::<Result<_, _>>()
            .map(AcrDomains)
    }

    /// True for `<name>.<an ACR domain>` on the default port.
    pub fn contains(&self, host: &RegistryHost) -> bool {
        self.0.iter().any(|g| g.matches(host))
    }

    fn describe(&self) -> String {
        self.0
            .iter()
            .map(HostGlob::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Default for AcrDomains {
    fn default() -> Self {
        AcrDomains(
            ACR_DOMAINS
                .iter()
                .filter_map(|d| HostGlob::parse(&format!("*.{d}"), true).ok())
                .collect(),
        )
    }
}

/// ACR credentials for the webhook; cheap to clone.
#[derive(Clone)]
pub struct Azure {
    settings: Option<AzureSettings>,
    domains: AcrDomains,
    http: IdentityHttp,
    registry: RegistryClient,
    /// Entra access tokens by (tenant, client).
    entra: TokenCache<(String, String), String>,
    /// ACR refresh tokens by (registry, tenant, client).
    refresh: TokenCache<(String, String, String), String>,
}

impl Azure {
    /// ACR credentials: Entra through `http`, the exchange through `registry`.
    pub fn new(
        settings: Option<AzureSettings>,
        domains: AcrDomains,
        http: IdentityHttp,
        registry: RegistryClient,
    ) -> Self {
        Azure {
            settings,
            domains,
            http,
            registry,
            entra: TokenCache::new(256),
            refresh: TokenCache::new(1024),
        }
    }

    /// Basic credentials (ACR's null user and a refresh token) for
    /// `registry`, an ACR host. A new refresh token is recorded in `metrics`
    /// for `registry_access`.
    pub async fn acr_credentials(
        &self,
        tenant: &str,
        client_id: &str,
        registry: &RegistryHost,
        registry_access: &str,
        metrics: &Metrics,
    ) -> Result<Credentials, IdentityError> {
        if !self.domains.contains(registry) {
            return Err(IdentityError::OutOfScope {
                registry: registry.to_string(),
                what: "Azure",
                scope: format!("ACR registries, {}", self.domains.describe()),
            });
        }
        let Some(settings) = &self.settings else {
            return Err(IdentityError::NotConfigured {
                what: "Azure workload identity",
                hint: "AZURE_FEDERATED_TOKEN_FILE (--azure-federated-token-file)",
            });
        };
        let key = (
            registry.as_str().to_owned(),
            tenant.to_owned(),
            client_id.to_owned(),
        );
        let token = self
            .refresh
            .get(key, async {
                let result = async {
                    let access = self.entra_token(settings, tenant, client_id).await?;
                    self.exchange(registry, tenant, &access).await
                }
                .await;
                metrics.identity_exchange(registry_access, result.is_ok());
                result
            })
            .await?;
        Ok(Credentials::Basic {
            username: ACR_USER.into(),
            password: token,
        })
    }

    /// The Entra access token for ACR (client credentials with the projected
    /// token as client assertion).
    async fn entra_token(
        &self,
        settings: &AzureSettings,
        tenant: &str,
        client_id: &str,
    ) -> Result<String, IdentityError> {
        self.entra
            .get((tenant.to_owned(), client_id.to_owned()), async {
                let assertion = read_token_file(&settings.token_file).await?;
                let authority = settings.authority_host.trim_end_matches('/');
                let endpoint = format!("{authority}/{tenant}/oauth2/v2.0/token");
                let url = reqwest::Url::parse(&endpoint)
                    .map_err(|e| IdentityError::Settings(format!("{endpoint}: {e}")))?;
                let answer = self
                    .http
                    .send(
                        self.http
                            .request(reqwest::Method::POST, url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(form(&[
                                ("client_id", client_id),
                                ("scope", "https://containerregistry.azure.net/.default"),
                                ("grant_type", "client_credentials"),
                                (
                                    "client_assertion_type",
                                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                ),
                                ("client_assertion", &assertion),
                            ])),
                        &endpoint,
                    )
                    .await?;
                #[derive(serde::Deserialize)]
                struct Answer {
                    access_token: String,
                    #[serde(default)]
                    expires_in: Option<u64>,
                }
                let a: Answer = serde_json::from_slice(&answer)
                    .map_err(|e| IdentityError::bad_answer(&endpoint, e.to_string()))?;
                Ok((
                    a.access_token,
                    Duration::from_secs(a.expires_in.unwrap_or(3600)),
                ))
            })
            .await
    }

    /// ACR's `/oauth2/exchange`, on the registry itself.
    async fn exchange(
        &self,
        registry: &RegistryHost,
        tenant: &str,
        access: &str,
    ) -> Result<(String, Duration), IdentityError> {
        let settings = self.registry.settings();
        let scheme = if settings.insecure.contains(registry.as_str()) {
            "http"
        } else {
            "https"
        };
        let endpoint = format!("{scheme}://{registry}/oauth2/exchange");
        settings
            .guard
            .check(registry)
            .map_err(|b| IdentityError::Blocked {
                endpoint: endpoint.clone(),
                reason: b.0,
            })?;
        let resp = self
            .registry
            .http()
            .post(&endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "access_token"),
                ("service", registry.as_str()),
                ("tenant", tenant),
                ("access_token", access),
            ]))
            .send()
            .await
            .map_err(|e| transport(&endpoint, &e))?;
        let answer = read_answer(resp, &endpoint).await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            refresh_token: String,
        }
        let a: Answer = serde_json::from_slice(&answer)
            .map_err(|e| IdentityError::bad_answer(&endpoint, e.to_string()))?;
        let valid = jwt_expiry(&a.refresh_token).map_or(REFRESH_TOKEN_DEFAULT, until);
        Ok((a.refresh_token, valid))
    }
}

/// The `exp` claim of a JWT (read, not verified: it only decides when to
/// refresh).
fn jwt_expiry(token: &str) -> Option<jiff::Timestamp> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    jiff::Timestamp::from_second(claims.get("exp")?.as_i64()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_tokens_go_only_to_acr_hosts() {
        let d = AcrDomains::new(&["azurecr.example.gov".into()]).unwrap();
        let is = |h: &str| d.contains(&RegistryHost::parse(h).unwrap());
        for yes in [
            "team.azurecr.io",
            "Team.AzureCR.io:443",
            "team.azurecr.cn",
            "team.azurecr.us",
            "team.azurecr.example.gov",
        ] {
            assert!(is(yes), "{yes}");
        }
        for no in [
            "azurecr.io",
            "team.azurecr.io:5000",
            "a.b.azurecr.io",
            "evil-azurecr.io",
            "team.azurecr.io.evil.net",
            "registry.example.com",
            "team.azurecr.de",
        ] {
            assert!(!is(no), "{no}");
        }
        assert!(AcrDomains::new(&["bad domain".into()]).is_err());
    }

    #[test]
    fn refresh_token_expiry_is_read_from_the_jwt() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"exp":4102444800}"#)
        );
        assert_eq!(
            jwt_expiry(&token),
            jiff::Timestamp::from_second(4_102_444_800).ok()
        );
        assert_eq!(jwt_expiry("opaque"), None);
    }
}
