//! What the cloud identities (`azure.rs`, `aws.rs`, `gcp.rs`) share: the
//! HTTP client they reach identity endpoints with, their errors, and a cache
//! of short-lived tokens that refreshes before expiry with one refresh in
//! flight per key.
//!
//! The identity client is not the registry client. It follows no
//! redirects, and it is the only client that may reach the explicitly
//! configured identity agents (the EKS Pod Identity agent, the GCE metadata
//! server), which the destination guard refuses for everything else. It only
//! ever talks to endpoints fixed by configuration, never to a host taken
//! from an image name; requests to registries (the ACR exchange) go through
//! the registry client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;
use reqwest::header::CONTENT_LENGTH;

use super::client::RegistryClient;
use super::guard::{AllowedDestination, Blocked, DestinationGuard, GuardedResolver};
use crate::engine::FailureClass;

/// Largest identity endpoint answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long a failed exchange is remembered, so that a broken identity does
/// not send one request per admission to the identity provider.
const FAILURE_MEMO: Duration = Duration::from_secs(5);

/// Why credentials could not be obtained. Messages never carry tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    /// The webhook was not started with what this identity needs.
    #[error("{what} is not configured ({hint})")]
    NotConfigured {
        /// The identity.
        what: &'static str,
        /// Which flags or environment variables.
        hint: &'static str,
    },
    /// The registry matches the RegistryAccess but cannot take this cloud's
    /// credentials: they are not sent.
    #[error("{registry} is not a registry {what} credentials are sent to (only {scope})")]
    OutOfScope {
        /// The registry.
        registry: String,
        /// The identity.
        what: &'static str,
        /// Where they go.
        scope: String,
    },
    /// A projected token file could not be read.
    #[error("reading {path}: {message}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The destination guard refused the endpoint.
    #[error("{endpoint}: {reason}")]
    Blocked {
        /// The endpoint.
        endpoint: String,
        /// The guard's reason.
        reason: String,
    },
    /// Connecting or reading failed.
    #[error("{endpoint}: {message}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// The error chain.
        message: String,
    },
    /// The endpoint answered with an error status.
    #[error("{endpoint} answered HTTP {status}: {detail}")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The status.
        status: u16,
        /// The provider's error code and message, when it gave them.
        detail: String,
    },
    /// The answer was not what the protocol says.
    #[error("{endpoint}: unexpected answer: {message}")]
    BadAnswer {
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        message: String,
    },
    /// Signing (SigV4) failed.
    #[error("signing the request to {endpoint}: {message}")]
    Signing {
        /// The endpoint.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The webhook's settings for this identity are wrong.
    #[error("{0}")]
    Settings(String),
}

impl IdentityError {
    /// The failure class an image gets when its credentials fail this way.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Blocked { .. } => FailureClass::BlockedDestination,
            Self::Transport { .. } => FailureClass::RegistryUnavailable,
            Self::Refused { status, .. } if *status == 429 || *status >= 500 => {
                FailureClass::RegistryUnavailable
            }
            _ => FailureClass::RegistryAuth,
        }
    }

    pub(super) fn bad_answer(endpoint: &str, message: impl Into<String>) -> Self {
        Self::BadAnswer {
            endpoint: endpoint.to_owned(),
            message: message.into(),
        }
    }
}

/// The HTTP client for identity endpoints; cheap to clone.
#[derive(Clone)]
pub struct IdentityHttp {
    http: reqwest::Client,
    guard: Arc<DestinationGuard>,
}

impl std::fmt::Debug for IdentityHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityHttp").finish_non_exhaustive()
    }
}

impl IdentityHttp {
    /// A client with the registry client's guard, name resolution (with its
    /// `--resolve` overrides), extra CA certificates and timeouts, plus
    /// `exceptions` to the guard that only this client gets.
    pub fn new(
        registry: &RegistryClient,
        exceptions: Vec<AllowedDestination>,
    ) -> Result<Self, IdentityError> {
        let settings = registry.settings();
        let guard = Arc::new(settings.guard.with_exceptions(exceptions));
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("portcullis-webhook/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .dns_resolver(GuardedResolver {
                guard: guard.clone(),
                dns: registry.dns().clone(),
            })
            .redirect(reqwest::redirect::Policy::none());
        for root in &settings.extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let http = builder
            .build()
            .map_err(|e| IdentityError::Settings(format!("identity HTTP client: {e}")))?;
        Ok(IdentityHttp { http, guard })
    }

    /// A request builder; send it with [`send`](Self::send).
    pub fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends a request to an identity endpoint: the guard (with this
    /// client's exceptions) judges the URL first (IP literals never reach the
    /// resolver), the answer is size-capped, and an error status becomes
    /// [`IdentityError::Refused`] with the provider's own error text.
    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        endpoint: &str,
    ) -> Result<Bytes, IdentityError> {
        let req = req.build().map_err(|e| IdentityError::Transport {
            endpoint: endpoint.to_owned(),
            message: e.to_string(),
        })?;
        check_url(&self.guard, req.url()).map_err(|Blocked(reason)| IdentityError::Blocked {
            endpoint: endpoint.to_owned(),
            reason,
        })?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| transport(endpoint, &e))?;
        read_answer(resp, endpoint).await
    }
}

/// The guard on an identity endpoint's URL, on the port the connection will
/// use (80 for `http://` without one).
fn check_url(guard: &DestinationGuard, url: &reqwest::Url) -> Result<(), Blocked> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        None => return Err(Blocked(format!("{url} has no host"))),
    };
    match url.port_or_known_default() {
        Some(p) => guard.check_text(&format!("{host}:{p}")),
        None => guard.check_text(&host),
    }
}

/// Reads a capped answer; an error status carries the provider's error text.
pub(super) async fn read_answer(
    mut resp: reqwest::Response,
    endpoint: &str,
) -> Result<Bytes, IdentityError> {
    let status = resp.status();
    if resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(IdentityError::bad_answer(endpoint, "answer too large"));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(endpoint, &e))? {
        if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(IdentityError::bad_answer(endpoint, "answer too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(IdentityError::Refused {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            detail: error_detail(&buf),
        });
    }
    Ok(Bytes::from(buf))
}

/// The error code and message of an identity provider's error answer (JSON:
/// OAuth2 `error`/`error_description`, Google's `error.message`, AWS JSON
/// `__type`/`message`; XML: AWS query `Code`/`Message`), shortened.
fn error_detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let detail = if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let parts: Vec<String> = [
            s("error"),
            s("error_description"),
            s("__type"),
            s("message").or_else(|| s("Message")),
            v.pointer("/error/message")
                .and_then(|x| x.as_str())
                .map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        .collect();
        parts.join(": ")
    } else if let Ok(doc) = roxmltree::Document::parse(&text) {
        let find = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name(name))
                .and_then(|n| n.text())
                .map(str::to_owned)
        };
        [find("Code"), find("Message")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ")
    } else {
        String::new()
    };
    let detail = if detail.is_empty() {
        "no error detail".to_owned()
    } else {
        detail
    };
    detail.chars().take(300).collect()
}

pub(super) fn transport(endpoint: &str, e: &reqwest::Error) -> IdentityError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(blocked) = err.downcast_ref::<super::guard::BlockedResolution>() {
            return IdentityError::Blocked {
                endpoint: endpoint.to_owned(),
                reason: blocked.to_string(),
            };
        }
        source = err.source();
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        message = format!("{message}: {err}");
        source = err.source();
    }
    IdentityError::Transport {
        endpoint: endpoint.to_owned(),
        message,
    }
}

/// Reads a projected ServiceAccount token (the kubelet rotates it, so it is
/// read for every exchange).
pub(super) async fn read_token_file(path: &std::path::Path) -> Result<String, IdentityError> {
    let err = |message: String| IdentityError::TokenFile {
        path: path.display().to_string(),
        message,
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(err("empty".into()));
    }
    Ok(token.to_owned())
}

/// `application/x-www-form-urlencoded` body.
pub(super) fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// When to refresh a token valid for `valid_for`: five minutes before it
/// expires, or after three quarters of a shorter life.
pub fn refresh_after(valid_for: Duration) -> Duration {
    let margin = (valid_for / 4).min(Duration::from_secs(300));
    valid_for.saturating_sub(margin)
}

/// How long something that expires at `at` (seconds since the epoch) is
/// still valid; zero when it is past.
pub(super) fn until(at: jiff::Timestamp) -> Duration {
    let left = at.duration_since(jiff::Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}

#[derive(Clone)]
struct Timed<V> {
    value: Result<V, IdentityError>,
    keep: Duration,
}

struct ByEntry;

impl<K, V> Expiry<K, Timed<V>> for ByEntry {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Timed<V>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.keep)
    }
}

/// Short-lived tokens by key. An entry lives until it should be refreshed
/// (see [`refresh_after`]); then the next caller fetches a new one while the
/// others wait for it (one refresh in flight per key). Failures are kept for
/// a few seconds.
#[derive(Clone)]
pub struct TokenCache<K, V> {
    cache: Cache<K, Timed<V>>,
}

impl<K, V> TokenCache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: u64) -> Self {
        TokenCache {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(ByEntry)
                .build(),
        }
    }

    /// The cached token, or the one `fetch` gets (with how long it is valid).
    pub async fn get(
        &self,
        key: K,
        fetch: impl Future<Output = Result<(V, Duration), IdentityError>>,
    ) -> Result<V, IdentityError> {
        self.cache
            .get_with(key, async {
                match fetch.await {
                    Ok((value, valid_for)) => Timed {
                        value: Ok(value),
                        keep: refresh_after(valid_for),
                    },
                    Err(e) => Timed {
                        value: Err(e),
                        keep: FAILURE_MEMO,
                    },
                }
            })
            .await
            .value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn refresh_comes_before_expiry() {
        assert_eq!(
            refresh_after(Duration::from_secs(12 * 3600)),
            Duration::from_secs(12 * 3600 - 300)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(8)),
            Duration::from_secs(6)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn one_refresh_in_flight_and_refreshed_before_expiry() {
        let cache: TokenCache<&str, String> = TokenCache::new(10);
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = |calls: Arc<AtomicUsize>| async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok((format!("token-{n}"), Duration::from_millis(800)))
        };
        let got =
            futures::future::join_all((0..20).map(|_| cache.get("role", fetch(calls.clone()))))
                .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one exchange for 20 callers"
        );
        assert!(got.iter().all(|t| t.as_deref().ok() == Some("token-1")));
        // Valid for 800 ms: refreshed after 600 ms, before it expires.
        tokio::time::sleep(Duration::from_millis(650)).await;
        let got =
            futures::future::join_all((0..20).map(|_| cache.get("role", fetch(calls.clone()))))
                .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(got.iter().all(|t| t.as_deref().ok() == Some("token-2")));
    }

    #[tokio::test]
    async fn failures_are_remembered_briefly() {
        let cache: TokenCache<&str, String> = TokenCache::new(10);
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let calls = calls.clone();
            let r = cache
                .get("role", async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(IdentityError::Settings("broken".into()))
                })
                .await;
            assert!(r.is_err());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn provider_errors_are_shown_without_the_body() {
        assert_eq!(
            error_detail(br#"{"error":"invalid_grant","error_description":"AADSTS700024: Client assertion is not within its valid time range."}"#),
            "invalid_grant: AADSTS700024: Client assertion is not within its valid time range."
        );
        assert_eq!(
            error_detail(br#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>No OpenIDConnect provider found</Message></Error></ErrorResponse>"#),
            "InvalidIdentityToken: No OpenIDConnect provider found"
        );
        assert_eq!(
            error_detail(br#"{"__type":"AccessDeniedException","message":"not authorized"}"#),
            "AccessDeniedException: not authorized"
        );
        assert_eq!(
            error_detail(br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#),
            "Permission 'iam.serviceAccounts.getAccessToken' denied"
        );
        assert_eq!(error_detail(b"<html>"), "no error detail");
    }

    #[test]
    fn identity_endpoints_are_judged_on_their_real_port() {
        let g = DestinationGuard::default().with_exceptions([AllowedDestination::Host {
            host: "169.254.169.254".into(),
            port: Some(80),
        }]);
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(check_url(&g, &url("http://169.254.169.254/computeMetadata/v1/")).is_ok());
        assert!(check_url(&g, &url("https://169.254.169.254/")).is_err());
        assert!(check_url(&g, &url("http://169.254.169.254:8080/")).is_err());
        assert!(check_url(&g, &url("http://169.254.170.23/v1/credentials")).is_err());
        assert!(
            check_url(
                &DestinationGuard::default(),
                &url("http://169.254.169.254/")
            )
            .is_err()
        );
    }
}
