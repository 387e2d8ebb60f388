//! Which credentials the webhook uses for a registry (RegistryAccess, DESIGN
//! §2): the first RegistryAccess (by name) whose pattern matches the registry
//! decides; with none, the registry is read anonymously.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use moka::future::Cache;
use portcullis_core::pattern::HostGlob;
use portcullis_core::reference::RegistryHost;
use portcullis_crds::{RegistryAccess, RegistryAuth, RegistryAuthType};

use super::auth::{Credentials, docker_config_credentials};
use super::client::RegistryClient;
use super::lookup::LookupFailure;
use crate::engine::FailureClass;

/// One compiled RegistryAccess.
#[derive(Debug, Clone)]
struct AccessRule {
    name: String,
    patterns: Vec<HostGlob>,
    auth: RegistryAuth,
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

/// Where Secrets and ServiceAccounts come from.
#[derive(Clone)]
pub enum SecretStore {
    /// Objects loaded from `--registry-config` (outside a cluster).
    Static {
        /// Secrets by (namespace, name).
        secrets: Arc<HashMap<(String, String), Secret>>,
        /// ServiceAccounts by (namespace, name).
        service_accounts: Arc<HashMap<(String, String), ServiceAccount>>,
    },
    /// The Kubernetes API, with a short cache.
    Kube {
        /// API client.
        client: Box<kube::Client>,
        /// Secrets by (namespace, name); `None` = absent.
        secrets: Cache<(String, String), Option<Arc<Secret>>>,
        /// ServiceAccounts' imagePullSecrets names.
        service_accounts: Cache<(String, String), Arc<Vec<String>>>,
    },
}

impl SecretStore {
    /// A store over the API, caching for `ttl`.
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
        }
    }

    /// The text of one key of a Secret loaded from files (`None` for the
    /// API store, which is read asynchronously elsewhere).
    pub fn value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        let SecretStore::Static { secrets, .. } = self else {
            return None;
        };
        secret_value(secrets.get(&(namespace.to_owned(), name.to_owned()))?, key)
    }

    /// An empty static store.
    pub fn empty() -> Self {
        SecretStore::Static {
            secrets: Arc::default(),
            service_accounts: Arc::default(),
        }
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, String> {
        let key = (namespace.to_owned(), name.to_owned());
        match self {
            SecretStore::Static { secrets, .. } => Ok(secrets.get(&key).cloned().map(Arc::new)),
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
        }
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
            SecretStore::Static {
                service_accounts, ..
            } => Ok(Arc::new(names(service_accounts.get(&key)))),
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
        }
    }
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

/// Azure workload identity settings (endpoints configurable for tests and
/// sovereign clouds).
#[derive(Debug, Clone)]
pub struct AzureSettings {
    /// Entra authority, e.g. `https://login.microsoftonline.com/`.
    pub authority_host: String,
    /// The projected ServiceAccount token file.
    pub token_file: std::path::PathBuf,
}

/// Resolves credentials for registries.
#[derive(Clone)]
pub struct CredentialResolver {
    store: SecretStore,
    azure: Option<AzureSettings>,
    client: RegistryClient,
    /// ACR refresh tokens by (registry, tenant, client).
    acr_tokens: Cache<(String, String, String), Arc<str>>,
}

impl CredentialResolver {
    /// A resolver reading Secrets from `store`.
    pub fn new(store: SecretStore, azure: Option<AzureSettings>, client: RegistryClient) -> Self {
        CredentialResolver {
            store,
            azure,
            client,
            acr_tokens: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(Duration::from_secs(45 * 60))
                .build(),
        }
    }

    /// Credentials for `registry` when admitting `pod`.
    pub async fn credentials(
        &self,
        config: &AccessConfig,
        host: &RegistryHost,
        pod: PodIdentity<'_>,
    ) -> Result<Credentials, LookupFailure> {
        let registry = host.as_str();
        let Some(rule) = config.rule_for(host) else {
            return Ok(Credentials::Anonymous);
        };
        let fail = |detail: String| LookupFailure {
            class: FailureClass::RegistryAuth,
            detail: format!("RegistryAccess {}: {detail}", rule.name),
        };
        match rule.auth.auth_type {
            RegistryAuthType::Anonymous => Ok(Credentials::Anonymous),
            RegistryAuthType::BasicSecret => {
                let Some(r) = &rule.auth.secret_ref else {
                    return Err(fail("secretRef is required for BasicSecret".into()));
                };
                let secret = self
                    .store
                    .secret(&r.namespace, &r.name)
                    .await
                    .map_err(fail)?
                    .ok_or_else(|| fail(format!("Secret {}/{} not found", r.namespace, r.name)))?;
                secret_credentials(&secret, registry).ok_or_else(|| {
                    fail(format!(
                        "Secret {}/{} holds no credentials for {registry}",
                        r.namespace, r.name
                    ))
                })
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
                        && let Some(c) = secret_credentials(&secret, registry)
                    {
                        return Ok(c);
                    }
                }
                // As the kubelet does: no matching pull secret means anonymous.
                Ok(Credentials::Anonymous)
            }
            RegistryAuthType::AzureWorkloadIdentity => {
                let Some(wi) = &rule.auth.azure_workload_identity else {
                    return Err(fail("azureWorkloadIdentity is required".into()));
                };
                let token = self
                    .acr_refresh_token(registry, &wi.tenant_id, &wi.client_id)
                    .await
                    .map_err(|e| fail(format!("Azure workload identity: {e}")))?;
                Ok(Credentials::Basic {
                    // ACR's documented user name for refresh tokens.
                    username: "00000000-0000-0000-0000-000000000000".into(),
                    password: token.to_string(),
                })
            }
            RegistryAuthType::AwsWebIdentity | RegistryAuthType::GcpWorkloadIdentity => Err(fail(
                "this identity type is set up by the operator but not yet used by the webhook"
                    .into(),
            )),
        }
    }

    /// Projected token → Entra access token (client assertion) → ACR refresh
    /// token (`/oauth2/exchange`). The registry's token endpoint then turns
    /// the refresh token into access tokens through the usual challenge.
    async fn acr_refresh_token(
        &self,
        registry: &str,
        tenant: &str,
        client_id: &str,
    ) -> Result<Arc<str>, String> {
        let Some(azure) = self.azure.clone() else {
            return Err("not configured (--azure-federated-token-file)".into());
        };
        let key = (registry.to_owned(), tenant.to_owned(), client_id.to_owned());
        let this = self.clone();
        let (registry, tenant, client_id) = key.clone();
        self.acr_tokens
            .try_get_with(key, async move {
                let assertion = tokio::fs::read_to_string(&azure.token_file)
                    .await
                    .map_err(|e| format!("reading {}: {e}", azure.token_file.display()))?;
                let authority = azure.authority_host.trim_end_matches('/');
                let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
                let entra: serde_json::Value = this
                    .post_form(
                        &url,
                        &[
                            ("client_id", client_id.as_str()),
                            ("scope", "https://containerregistry.azure.net/.default"),
                            ("grant_type", "client_credentials"),
                            (
                                "client_assertion_type",
                                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                            ),
                            ("client_assertion", assertion.trim()),
                        ],
                    )
                    .await?;
                let access = entra
                    .get("access_token")
                    .and_then(|v| v.as_str())
                    .ok_or("Entra answered without access_token")?;
                let scheme = if this.client.settings().insecure.contains(&registry) {
                    "http"
                } else {
                    "https"
                };
                this.client
                    .settings()
                    .guard
                    .check_text(&registry)
                    .map_err(|e| e.to_string())?;
                let exchange: serde_json::Value = this
                    .post_form(
                        &format!("{scheme}://{registry}/oauth2/exchange"),
                        &[
                            ("grant_type", "access_token"),
                            ("service", registry.as_str()),
                            ("tenant", tenant.as_str()),
                            ("access_token", access),
                        ],
                    )
                    .await?;
                exchange
                    .get("refresh_token")
                    .and_then(|v| v.as_str())
                    .map(Arc::from)
                    .ok_or_else(|| "ACR exchange answered without refresh_token".to_owned())
            })
            .await
            .map_err(|e| (*e).clone())
    }

    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .client
            .http()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{url}: invalid JSON: {e}"))
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

/// Credentials for `registry` in a basic-auth or dockerconfigjson Secret.
fn secret_credentials(secret: &Secret, registry: &str) -> Option<Credentials> {
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
        return docker_config_credentials(&json, registry);
    }
    if let Some(json) = data(".dockercfg") {
        // Legacy format: the `auths` map without the wrapper.
        let wrapped = [b"{\"auths\":".as_slice(), &json, b"}"].concat();
        return docker_config_credentials(&wrapped, registry);
    }
    let username = String::from_utf8(data("username")?).ok()?;
    let password = String::from_utf8(data("password")?).ok()?;
    Some(Credentials::Basic { username, password })
}
