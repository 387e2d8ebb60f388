//! A small OCI distribution client: manifests, referrers (API with tag
//! fallback) and blobs, with the token protocol, size caps, digest
//! verification, the destination guard and per-registry throttling backoff.
//! See `auth.rs` for why this is not oci-client.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use sha2::{Digest as _, Sha256, Sha512};

use portcullis_core::reference::RegistryHost;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::{Challenge, Credentials, TokenResponse, parse_challenge};
use super::dns::{DnsResolver, DnsSettings};
use super::error::{Operation, RegistryError};
use super::guard::{Blocked, BlockedResolution, DestinationGuard, GuardedResolver};
use crate::metrics::Metrics;

/// Manifest media types asked for when resolving an image.
pub const IMAGE_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a referrers list.
pub const INDEX_ACCEPT: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an artifact manifest.
pub const ARTIFACT_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

/// Settings of the registry client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Registries (normalised `host[:port]`) spoken to over plain HTTP.
    pub insecure: HashSet<String>,
    /// Token realm hosts (normalised `host[:port]`) that may receive basic
    /// credentials of another registry.
    pub trusted_realms: HashSet<String>,
    /// The destination guard.
    pub guard: Arc<DestinationGuard>,
    /// Time limit of one HTTP request.
    pub request_timeout: Duration,
    /// Time limit to connect.
    pub connect_timeout: Duration,
    /// Largest manifest or referrers list accepted.
    pub max_manifest_bytes: usize,
    /// Largest findings blob accepted.
    pub max_blob_bytes: usize,
    /// Extra CA certificates (PEM) trusted for registries.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Name resolution.
    pub dns: DnsSettings,
    /// Registry requests in flight at once, all registries together.
    pub max_in_flight: usize,
    /// Registry requests in flight at once to one registry.
    pub max_in_flight_per_registry: usize,
    /// Memory for cached bearer tokens, in bytes.
    pub token_cache_bytes: u64,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            insecure: HashSet::new(),
            trusted_realms: HashSet::new(),
            guard: Arc::new(DestinationGuard::default()),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_manifest_bytes: 4 * 1024 * 1024,
            max_blob_bytes: 32 * 1024 * 1024,
            extra_roots: Vec::new(),
            dns: DnsSettings::default(),
            max_in_flight: 256,
            max_in_flight_per_registry: 32,
            token_cache_bytes: 4 << 20,
        }
    }
}

/// Where to read: a repository in a registry, with credentials for it only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The registry, normalised (`docker.io`, `host:port`).
    pub registry: RegistryHost,
    /// The registry's bounded metrics label: a configured pattern or a
    /// well-known registry, else `other` (image names come from users).
    pub label: Arc<str>,
    /// Repository path.
    pub repository: String,
    /// Credentials for this registry.
    pub credentials: Credentials,
}

/// Content fetched by reference, verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bytes.
    pub bytes: Bytes,
    /// Their digest (`sha256:...`), verified.
    pub digest: String,
    /// The `Content-Type` the registry gave.
    pub media_type: Option<String>,
}

type TokenKey = (String, String, Arc<str>);

/// The registry client; cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    settings: Arc<ClientSettings>,
    /// Bearer tokens by (registry, scope, credential fingerprint).
    tokens: Cache<TokenKey, Arc<str>>,
    /// Registries that asked for basic authentication.
    basic: Cache<String, ()>,
    /// Registries that answered 429, until when.
    backoff: Cache<String, Instant>,
    /// Requests in flight, all registries.
    in_flight: Arc<Semaphore>,
    /// Requests in flight per registry.
    per_registry: Cache<String, Arc<Semaphore>>,
    metrics: Arc<Metrics>,
    /// Name resolution (with `--resolve` overrides), shared with the
    /// identity client.
    dns: DnsResolver,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("settings", &self.settings)
            .finish()
    }
}

impl RegistryClient {
    /// Builds the client. Requires a process-wide rustls crypto provider.
    pub fn new(settings: ClientSettings, metrics: Arc<Metrics>) -> Result<Self, RegistryError> {
        let guard = settings.guard.clone();
        let redirect_guard = guard.clone();
        let dns = DnsResolver::new(&settings.dns).map_err(RegistryError::Setup)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("portcullis-webhook/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(settings.max_in_flight_per_registry)
            .dns_resolver(GuardedResolver {
                guard,
                dns: dns.clone(),
            })
            // Blob redirects (to object storage) are followed, but never into a
            // refused address; reqwest drops Authorization on a host change.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                match redirect_guard.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(blocked) => attempt.error(blocked),
                }
            }));
        for root in &settings.extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Setup(e.to_string()))?;
        let token_cache_bytes = settings.token_cache_bytes;
        let max_in_flight = settings.max_in_flight.max(1);
        Ok(RegistryClient {
            http,
            settings: Arc::new(settings),
            tokens: Cache::builder()
                .weigher(|k: &TokenKey, v: &Arc<str>| {
                    crate::cache::weight(k.0.len() + k.1.len() + k.2.len() + v.len())
                })
                .max_capacity(token_cache_bytes)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            basic: Cache::builder().max_capacity(1_000).build(),
            backoff: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            per_registry: Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            metrics,
            dns,
        })
    }

    /// The client's settings.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// The guarded HTTP client, for requests to registries outside the
    /// distribution API (the ACR token exchange). Identity providers are
    /// reached through `identity::IdentityHttp`.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Name resolution, with the `--resolve` overrides.
    pub fn dns(&self) -> &DnsResolver {
        &self.dns
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Fetches a manifest by tag or digest and verifies it (against the digest
    /// asked for, or the `Docker-Content-Digest` the registry claims).
    pub async fn manifest(
        &self,
        target: &Target,
        reference: &str,
        accept: &str,
        op: Operation,
    ) -> Result<Fetched, RegistryError> {
        let url = format!("{}/manifests/{reference}", self.repo_url(target));
        let resp = self.send(target, op, &url, accept).await?;
        let claimed = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = self
            .read_capped(resp, &url, self.settings.max_manifest_bytes)
            .await?;
        let expected = if is_digest(reference) {
            Some(reference.to_owned())
        } else {
            claimed.filter(|d| is_digest(d))
        };
        let digest = match expected {
            Some(expected) => {
                verify_digest(&bytes, &expected, &url)?;
                expected
            }
            None => sha256_digest(&bytes),
        };
        Ok(Fetched {
            bytes,
            digest,
            media_type,
        })
    }

    /// The referrers of `digest` as an image index (referrers API, then the
    /// `sha256-<hex>` tag). `None` when nothing is attached.
    pub async fn referrers(
        &self,
        target: &Target,
        digest: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        match self.referrers_api(target, digest).await? {
            Some(bytes) => Ok(Some(bytes)),
            None => self.referrers_tag(target, digest).await,
        }
    }

    /// The referrers API alone: `None` when the registry has none (404, or
    /// 400/405, as some registries answer unknown endpoints).
    pub async fn referrers_api(
        &self,
        target: &Target,
        digest: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        if !is_digest(digest) {
            return Err(RegistryError::BadContent {
                url: digest.to_owned(),
                message: "not a digest".into(),
            });
        }
        let url = format!("{}/referrers/{digest}", self.repo_url(target));
        match self
            .send(target, Operation::Referrers, &url, INDEX_ACCEPT)
            .await
        {
            Ok(resp) => {
                let bytes = self
                    .read_capped(resp, &url, self.settings.max_manifest_bytes)
                    .await?;
                Ok(Some(bytes))
            }
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(RegistryError::Status { status, .. }) if status == 400 || status == 405 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The `sha256-<hex>` fallback tag alone (registries without the
    /// referrers API): `None` when nothing is attached.
    pub async fn referrers_tag(
        &self,
        target: &Target,
        digest: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        if !is_digest(digest) {
            return Err(RegistryError::BadContent {
                url: digest.to_owned(),
                message: "not a digest".into(),
            });
        }
        let tag = digest.replacen(':', "-", 1);
        match self
            .manifest(target, &tag, INDEX_ACCEPT, Operation::ReferrersTag)
            .await
        {
            Ok(fetched) => Ok(Some(fetched.bytes)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fetches a blob, capped at `max` bytes, verified against `digest`.
    pub async fn blob(
        &self,
        target: &Target,
        digest: &str,
        max: usize,
    ) -> Result<Bytes, RegistryError> {
        if !is_digest(digest) {
            return Err(RegistryError::BadContent {
                url: digest.to_owned(),
                message: "not a digest".into(),
            });
        }
        let url = format!("{}/blobs/{digest}", self.repo_url(target));
        let resp = self.send(target, Operation::Blob, &url, "*/*").await?;
        let bytes = self
            .read_capped(resp, &url, max.min(self.settings.max_blob_bytes))
            .await?;
        verify_digest(&bytes, digest, &url)?;
        Ok(bytes)
    }

    fn repo_url(&self, target: &Target) -> String {
        let scheme = if self.settings.insecure.contains(target.registry.as_str()) {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{}/v2/{}",
            api_host(target.registry.as_str()),
            target.repository
        )
    }

    /// One request with authentication: a cached token, or the challenge
    /// answered once.
    async fn send(
        &self,
        target: &Target,
        op: Operation,
        url: &str,
        accept: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        self.settings
            .guard
            .check(&target.registry)
            .map_err(|Blocked(reason)| RegistryError::Blocked { reason })?;
        if let Some(until) = self.backoff.get(target.registry.as_str()).await {
            let now = Instant::now();
            if until > now {
                return Err(RegistryError::Throttled {
                    url: url.to_owned(),
                    retry_after: Some((until - now).as_secs().max(1)),
                });
            }
        }
        let scope = format!("repository:{}:pull", target.repository);
        let key: TokenKey = (
            target.registry.as_str().to_owned(),
            scope.clone(),
            target.credentials.fingerprint(),
        );
        let mut authorization = match self.tokens.get(&key).await {
            Some(token) => Some(format!("Bearer {token}")),
            None if self.basic.contains_key(target.registry.as_str()) => {
                target.credentials.basic_header()
            }
            None => None,
        };
        for attempt in 0..2 {
            let resp = self
                .timed(target, op, url, accept, authorization.as_deref())
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return self.check_status(target, url, resp).await;
            }
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            authorization = match challenge {
                Some(Challenge::Basic) => {
                    let Some(header) = target.credentials.basic_header() else {
                        return Err(RegistryError::Unauthorized {
                            url: url.to_owned(),
                            status: 401,
                            detail: "basic authentication required and no credentials configured"
                                .into(),
                        });
                    };
                    self.basic
                        .insert(target.registry.as_str().to_owned(), ())
                        .await;
                    Some(header)
                }
                Some(Challenge::Bearer { realm, service, .. }) => {
                    self.tokens.invalidate(&key).await;
                    let this = self.clone();
                    let target2 = target.clone();
                    let scope2 = scope.clone();
                    let token = self
                        .tokens
                        .try_get_with(key.clone(), async move {
                            this.fetch_token(&target2, &realm, service.as_deref(), &scope2)
                                .await
                        })
                        .await
                        .map_err(|e| (*e).clone())?;
                    Some(format!("Bearer {token}"))
                }
                None => {
                    return Err(RegistryError::Unauthorized {
                        url: url.to_owned(),
                        status: 401,
                        detail: "unsupported authentication challenge".into(),
                    });
                }
            };
        }
        Err(RegistryError::Unauthorized {
            url: url.to_owned(),
            status: 401,
            detail: "credentials refused".into(),
        })
    }

    async fn timed(
        &self,
        target: &Target,
        op: Operation,
        url: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut req = self.http.get(url).header(ACCEPT, accept);
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        let _permits = self.permits(target).await?;
        self.send_measured(req, &target.label, op)
            .await
            .map_err(|e| transport_error(url, &e))
    }

    /// A slot among all requests in flight and among this registry's. A
    /// request that cannot get one within its own time limit fails as
    /// registry trouble instead of queueing without bound.
    async fn permits(
        &self,
        target: &Target,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), RegistryError> {
        let busy = |message: &str| RegistryError::Busy {
            registry: target.registry.as_str().to_owned(),
            message: message.to_owned(),
        };
        let per = self
            .per_registry
            .get_with_by_ref(target.registry.as_str(), async {
                Arc::new(Semaphore::new(
                    self.settings.max_in_flight_per_registry.max(1),
                ))
            })
            .await;
        let wait = self.settings.request_timeout;
        let registry = tokio::time::timeout(wait, per.acquire_owned())
            .await
            .map_err(|_| busy("too many requests in flight to this registry"))?
            .map_err(|_| busy("closed"))?;
        let all = tokio::time::timeout(wait, self.in_flight.clone().acquire_owned())
            .await
            .map_err(|_| busy("too many registry requests in flight"))?
            .map_err(|_| busy("closed"))?;
        Ok((registry, all))
    }

    /// Sends and records the request's status and latency.
    async fn send_measured(
        &self,
        req: reqwest::RequestBuilder,
        label: &str,
        op: Operation,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let started = Instant::now();
        let result = req.send().await;
        let status = match &result {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "error".to_owned(),
        };
        self.metrics
            .registry_request(label, op.as_str(), &status, started.elapsed());
        result
    }

    async fn check_status(
        &self,
        target: &Target,
        url: &str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let url = url.to_owned();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                url,
                status: status.as_u16(),
                detail: "credentials refused".into(),
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound { url },
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                // Honour Retry-After (capped) so a throttled registry is not
                // hammered by every admission in the meantime.
                let wait = Duration::from_secs(retry_after.unwrap_or(1).min(300));
                self.backoff
                    .insert(target.registry.as_str().to_owned(), Instant::now() + wait)
                    .await;
                RegistryError::Throttled { url, retry_after }
            }
            s => RegistryError::Status {
                url,
                status: s.as_u16(),
            },
        })
    }

    async fn fetch_token(
        &self,
        target: &Target,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Arc<str>, RegistryError> {
        let err = |message: String| RegistryError::Token {
            realm: realm.to_owned(),
            message,
        };
        let parsed = reqwest::Url::parse(realm).map_err(|e| err(format!("invalid realm: {e}")))?;
        self.settings
            .guard
            .check_url(&parsed)
            .map_err(|Blocked(reason)| RegistryError::Blocked { reason })?;
        let realm_host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return Err(err("realm has no host".into())),
        };
        let realm_host = RegistryHost::parse(&realm_host)
            .map(|h| h.as_str().to_owned())
            .unwrap_or(realm_host);
        let plain_ok = self.settings.insecure.contains(&realm_host);
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && plain_ok) {
            return Err(err(
                "realm must be https (or an --insecure-registry host)".into()
            ));
        }
        // Same origin (host and port) as the registry, or Docker Hub's
        // well-known token service.
        // `realm_host` is normalised like the registry (port 443 dropped), so
        // same origin is string equality.
        let same_host = realm_host == api_host(target.registry.as_str())
            || realm_host == target.registry.as_str()
            || (target.registry.is_docker_hub() && realm_host == "auth.docker.io");
        let mut req = self.http.get(parsed.clone()).query(&[("scope", scope)]);
        if let Some(s) = service {
            req = req.query(&[("service", s)]);
        }
        // Credentials go only to their own registry's realm, or to a realm the
        // operator trusts (DESIGN §4).
        if (same_host || self.settings.trusted_realms.contains(&realm_host))
            && let Some(h) = target.credentials.basic_header()
        {
            req = req.header(AUTHORIZATION, h);
        }
        let result = {
            let _permits = self.permits(target).await?;
            self.send_measured(req, &target.label, Operation::Token)
                .await
        };
        let resp = result.map_err(|e| match transport_error(realm, &e) {
            RegistryError::Transport { message, .. } => err(message),
            other => other,
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                url: realm.to_owned(),
                status: status.as_u16(),
                detail: "token endpoint refused the credentials".into(),
            });
        }
        if !status.is_success() {
            return Err(err(format!("answered {status}")));
        }
        let bytes = self.read_capped(resp, realm, 64 * 1024).await?;
        let token: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| err(format!("invalid token response: {e}")))?;
        let (token, _expires) = token
            .into_token()
            .ok_or_else(|| err("token response carries no token".into()))?;
        Ok(Arc::from(token))
    }

    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        url: &str,
        max: usize,
    ) -> Result<Bytes, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            url: url.to_owned(),
            limit: max,
        };
        if let Some(len) = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > max as u64
        {
            return Err(too_large());
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(url, &e))? {
            if buf.len() + chunk.len() > max {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    }
}

/// Docker Hub's API host differs from its name in image references.
fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

fn parse_retry_after(value: &str) -> Option<u64> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(secs);
    }
    let at = jiff::fmt::rfc2822::parse(value.trim()).ok()?.timestamp();
    let secs = at.duration_since(jiff::Timestamp::now()).as_secs();
    Some(secs.max(0).unsigned_abs())
}

fn transport_error(url: &str, e: &reqwest::Error) -> RegistryError {
    // Refusals from the resolver or the redirect policy are the guard's,
    // whatever the HTTP stack wrapped them in.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(blocked) = err.downcast_ref::<BlockedResolution>() {
            return RegistryError::Blocked {
                reason: blocked.to_string(),
            };
        }
        if let Some(Blocked(reason)) = err.downcast_ref::<Blocked>() {
            return RegistryError::Blocked {
                reason: format!("redirect refused: {reason}"),
            };
        }
        source = err.source();
    }
    if e.is_timeout() {
        return RegistryError::Timeout {
            url: url.to_owned(),
        };
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        message = format!("{message}: {err}");
        source = err.source();
    }
    RegistryError::Transport {
        url: url.to_owned(),
        message,
    }
}

/// True for `algorithm:hex` digests this client can verify.
pub fn is_digest(s: &str) -> bool {
    match s.split_once(':') {
        Some(("sha256", hex)) => {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        }
        Some(("sha512", hex)) => {
            hex.len() == 128
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        }
        _ => false,
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    hex_digest("sha256", &Sha256::digest(bytes))
}

fn hex_digest(algorithm: &str, digest: &[u8]) -> String {
    let mut out = String::with_capacity(algorithm.len() + 1 + digest.len() * 2);
    out.push_str(algorithm);
    out.push(':');
    for b in digest {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn verify_digest(bytes: &[u8], expected: &str, url: &str) -> Result<(), RegistryError> {
    let actual = if expected.starts_with("sha512:") {
        hex_digest("sha512", &Sha512::digest(bytes))
    } else {
        sha256_digest(bytes)
    };
    if actual == expected {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            url: url.to_owned(),
            expected: expected.to_owned(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_strictly() {
        let d = sha256_digest(b"hello");
        assert!(is_digest(&d));
        assert!(!is_digest("sha256:../../etc"));
        assert!(!is_digest(&d.to_uppercase()));
        assert!(!is_digest("md5:abcd"));
        assert!(verify_digest(b"hello", &d, "u").is_ok());
        assert!(matches!(
            verify_digest(b"hellO", &d, "u"),
            Err(RegistryError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("7"), Some(7));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn docker_hub_and_ports() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    }
}
