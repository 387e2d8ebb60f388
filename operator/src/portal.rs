//! Reading a rule source: a conditional HTTPS GET (ETag / If-None-Match) with
//! an optional bearer token and CA bundle, or a ConfigMap key.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use portcullis_crds::RuleSource;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH};
use sha2::{Digest, Sha256};

/// Largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The document is unchanged since `revision` (HTTP 304).
    NotModified,
    /// The document, and its revision (the ETag, else a content hash).
    Document {
        /// Text.
        text: String,
        /// ETag or `sha256:<hex>`.
        revision: String,
    },
}

/// Why a source could not be read. Each is a `Degraded` reason.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The auth Secret or ConfigMap could not be read.
    #[error("{0}")]
    Reference(String),
    /// The caBundle is not PEM.
    #[error("caBundle: {0}")]
    CaBundle(String),
    /// Connection, TLS or timeout.
    #[error("fetching {url}: {message}")]
    Transport {
        /// URL.
        url: String,
        /// Error chain.
        message: String,
    },
    /// A non-2xx, non-304 answer.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// URL.
        url: String,
        /// Status.
        status: u16,
    },
    /// Too large or not UTF-8.
    #[error("{url}: {message}")]
    Body {
        /// URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl FetchError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Reference(_) => "ReferenceNotFound",
            Self::CaBundle(_) => "InvalidCABundle",
            Self::Transport { .. } => "FetchFailed",
            Self::Status { .. } => "HTTPError",
            Self::Body { .. } => "InvalidResponse",
        }
    }
}

fn content_revision(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

/// Reads the source. `previous` is the revision last applied: an ETag there
/// is sent as `If-None-Match`.
pub async fn fetch(
    client: &kube::Client,
    source: &RuleSource,
    previous: Option<&str>,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    if let Some(cm) = &source.spec.config_map_ref {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm.namespace);
        let map = api
            .get_opt(&cm.name)
            .await
            .map_err(|e| {
                FetchError::Reference(format!("ConfigMap {}/{}: {e}", cm.namespace, cm.name))
            })?
            .ok_or_else(|| {
                FetchError::Reference(format!("ConfigMap {}/{} not found", cm.namespace, cm.name))
            })?;
        let text = map
            .data
            .and_then(|d| d.get(&cm.key).cloned())
            .ok_or_else(|| {
                FetchError::Reference(format!(
                    "ConfigMap {}/{} has no key {}",
                    cm.namespace, cm.name, cm.key
                ))
            })?;
        let revision = content_revision(&text);
        return Ok(if previous == Some(revision.as_str()) {
            Fetched::NotModified
        } else {
            Fetched::Document { text, revision }
        });
    }
    let Some(url) = &source.spec.url else {
        return Err(FetchError::Reference(
            "neither url nor configMapRef is set".into(),
        ));
    };
    let token = match &source.spec.auth_secret_ref {
        Some(r) => {
            let api: Api<Secret> = Api::namespaced(client.clone(), &r.namespace);
            let secret = api
                .get_opt(&r.name)
                .await
                .map_err(|e| {
                    FetchError::Reference(format!("Secret {}/{}: {e}", r.namespace, r.name))
                })?
                .ok_or_else(|| {
                    FetchError::Reference(format!("Secret {}/{} not found", r.namespace, r.name))
                })?;
            let value = secret
                .data
                .and_then(|d| d.get(&r.key).map(|v| v.0.clone()))
                .ok_or_else(|| {
                    FetchError::Reference(format!(
                        "Secret {}/{} has no key {}",
                        r.namespace, r.name, r.key
                    ))
                })?;
            Some(String::from_utf8_lossy(&value).trim().to_owned())
        }
        None => None,
    };
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("portcullis-operator/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &source.spec.ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| FetchError::CaBundle(e.to_string()))?;
        if certs.is_empty() {
            return Err(FetchError::CaBundle("no certificate in the bundle".into()));
        }
        // Only the bundle is trusted for this source.
        builder = builder.tls_certs_only(certs);
    }
    let http = builder.build().map_err(|e| FetchError::Transport {
        url: url.clone(),
        message: chain(&e),
    })?;
    let mut req = http.get(url);
    if let Some(t) = &token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(etag) = previous.filter(|p| !p.starts_with("sha256:")) {
        req = req.header(IF_NONE_MATCH, etag);
    }
    let resp = req.send().await.map_err(|e| FetchError::Transport {
        url: url.clone(),
        message: chain(&e),
    })?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.clone(),
            status: status.as_u16(),
        });
    }
    let etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut resp = resp;
    let mut body = Vec::new();
    // Reading fails on a body shorter than its Content-Length (truncation).
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Transport {
        url: url.clone(),
        message: chain(&e),
    })? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::Body {
                url: url.clone(),
                message: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).map_err(|_| FetchError::Body {
        url: url.clone(),
        message: "not UTF-8".into(),
    })?;
    let revision = etag.unwrap_or_else(|| content_revision(&text));
    Ok(if previous == Some(revision.as_str()) {
        Fetched::NotModified
    } else {
        Fetched::Document { text, revision }
    })
}
