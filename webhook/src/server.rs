//! The HTTPS admission endpoint and the plain-HTTP health/metrics endpoint,
//! with certificate reload, client-certificate authentication, bounds on
//! connections and time, load shedding and graceful shutdown.
//!
//! With `failurePolicy: Ignore` every review the webhook fails to answer is an
//! admission, and with `Fail` it is an outage, so what a client can hold is
//! bounded: connections (`--max-connections`; more are closed at once, and
//! the health port has its own small pool so probes keep answering), the TLS
//! handshake, the request head (slowloris), the body (slow uploads), idle
//! keep-alive time, and reviews being judged at once (`--max-inflight-reviews`;
//! more get 503 so the API server's failurePolicy decides without queueing).
//!
//! The connection bounds, eviction and drain live in `portcullis_runtime::http`
//! (shared with the operator's admin endpoint); the review bounds (body size
//! and time, reviews in flight) are here.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use portcullis_runtime::admin::{self, text};
use portcullis_runtime::http::{Body, ConnectionLimits, accept_loop};

use crate::admission::decode_review;
use crate::config::Config;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::policies::PolicyStore;

/// Bounds on what clients may hold.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Open admission connections; more are closed at once.
    pub max_connections: usize,
    /// Open health/metrics connections.
    pub max_health_connections: usize,
    /// Reviews judged at once; more get 503.
    pub max_inflight_reviews: usize,
    /// Largest AdmissionReview body (413 beyond).
    pub max_body_bytes: usize,
    /// TLS handshake.
    pub handshake_timeout: Duration,
    /// Reading a request's head.
    pub header_timeout: Duration,
    /// Reading a request's body.
    pub body_timeout: Duration,
    /// No byte moving on a connection.
    pub idle_timeout: Duration,
    /// Draining connections on shutdown.
    pub drain_timeout: Duration,
}

impl ServerLimits {
    /// The per-connection time bounds.
    pub fn connection(&self) -> ConnectionLimits {
        ConnectionLimits {
            handshake_timeout: self.handshake_timeout,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.drain_timeout,
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 512,
            max_health_connections: 32,
            max_inflight_reviews: 256,
            max_body_bytes: 4 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The gate.
    pub gate: Arc<Gate>,
    /// Rules in force (readiness).
    pub store: Arc<PolicyStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Serving certificate loaded.
    pub tls_ready: Arc<AtomicBool>,
    /// Set on SIGTERM: readiness turns false while connections drain.
    pub shutting_down: Arc<AtomicBool>,
    /// Reviews being judged.
    pub inflight: Arc<Semaphore>,
    /// Bounds.
    pub limits: ServerLimits,
}

/// `POST /validate`.
pub async fn admission(state: AppState, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/validate" {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview");
    }
    // Not ready: no answer is better than one from an empty rule set.
    if !state.store.is_ready() {
        state.metrics.shed("not_ready");
        return unavailable("portcullis: policies are not loaded yet");
    }
    let Ok(_slot) = state.inflight.clone().try_acquire_owned() else {
        state.metrics.shed("inflight_reviews");
        return unavailable("portcullis: too many reviews in flight");
    };
    let limited = Limited::new(req.into_body(), state.limits.max_body_bytes);
    let body = match tokio::time::timeout(state.limits.body_timeout, limited.collect()).await {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            );
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "AdmissionReview larger than {} bytes",
                    state.limits.max_body_bytes
                ),
            );
        }
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let review = match decode_review(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // The objects borrow from the body: read what they ask to run, then
    // drop both before waiting on registries (a review held in flight keeps
    // only its head).
    let workload = state.gate.workload(&review);
    let review = review.into_head();
    drop(body);
    let decision = state.gate.answer(&review, workload).await;
    let json =
        crate::admission::encode_response(&review.api_version, &review.request.uid, &decision);
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn unavailable(message: &'static str) -> Response<Body> {
    let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// `/healthz`, `/readyz`, `/metrics`.
pub async fn health(state: AppState, req: Request<Incoming>) -> Response<Body> {
    admin::respond(
        &req,
        || {
            let mut waiting = Vec::new();
            if !state.store.is_ready() {
                waiting.push("policies not synced");
            }
            if !state.tls_ready.load(Ordering::Acquire) {
                waiting.push("serving certificate not loaded");
            }
            if state.shutting_down.load(Ordering::Acquire) {
                waiting.push("shutting down");
            }
            waiting
        },
        || state.metrics.render(),
    )
}

/// Serving failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate or key could not be loaded.
    #[error("loading the serving certificate {cert} / {key}: {message}")]
    Tls {
        /// Certificate path.
        cert: PathBuf,
        /// Key path.
        key: PathBuf,
        /// Cause.
        message: String,
    },
    /// The client CA bundle could not be loaded.
    #[error("loading the client CA {path}: {message}")]
    ClientCa {
        /// Path.
        path: PathBuf,
        /// Cause.
        message: String,
    },
    /// A listener could not be bound.
    #[error("serving on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
}

/// The serving certificate, replaced atomically when its files change.
#[derive(Debug)]
pub struct ReloadingCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported key: {e}"))?;
    Ok(CertifiedKey::new(chain, signing))
}

fn tls_config(
    config: &Config,
    cert: Arc<ReloadingCert>,
) -> Result<rustls::ServerConfig, ServeError> {
    let builder = rustls::ServerConfig::builder();
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca_error = |message: String| ServeError::ClientCa {
                path: path.clone(),
                message,
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
                roots
                    .add(c.map_err(|e| ca_error(e.to_string()))?)
                    .map_err(|e| ca_error(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| ca_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut tls = builder.with_cert_resolver(cert);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Serves until SIGTERM or Ctrl-C, then drains connections.
pub async fn serve(config: &Config, state: AppState) -> Result<(), ServeError> {
    let certified = load_certified_key(&config.tls_cert, &config.tls_key).map_err(|message| {
        ServeError::Tls {
            cert: config.tls_cert.clone(),
            key: config.tls_key.clone(),
            message,
        }
    })?;
    let cert = Arc::new(ReloadingCert(ArcSwap::from_pointee(certified)));
    let tls = Arc::new(tls_config(config, cert.clone())?);
    state.tls_ready.store(true, Ordering::Release);
    tokio::spawn(watch_certificate(
        cert,
        config.tls_cert.clone(),
        config.tls_key.clone(),
        config.tls_reload_interval,
    ));

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen { addr, source })
    };
    let admission_listener = bind(config.listen).await?;
    let health_listener = bind(config.metrics_listen).await?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let limits = state.limits;
    let connection = limits.connection();
    let health_task = {
        let state = state.clone();
        tokio::spawn(accept_loop(
            health_listener,
            None,
            connection,
            limits.max_health_connections,
            stop_rx.clone(),
            Arc::new(portcullis_runtime::http::Unobserved),
            move |req| health(state.clone(), req),
        ))
    };
    let admission_task = {
        let state = state.clone();
        tokio::spawn(accept_loop(
            admission_listener,
            Some(TlsAcceptor::from(tls)),
            connection,
            limits.max_connections,
            stop_rx,
            state.metrics.clone(),
            move |req| admission(state.clone(), req),
        ))
    };
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, "portcullis-webhook serving");

    portcullis_runtime::signals::shutdown_signal().await;
    state.shutting_down.store(true, Ordering::Release);
    if !config.shutdown_delay.is_zero() {
        // Keep answering while the endpoint is removed from the Service, so a
        // rollout never leaves the API server without a ready endpoint.
        tracing::info!(
            delay_ms = config.shutdown_delay.as_millis() as u64,
            "shutting down: waiting before closing listeners"
        );
        tokio::time::sleep(config.shutdown_delay).await;
    }
    tracing::info!("shutting down: draining connections");
    let _ = stop_tx.send(true);
    let _ = admission_task.await;
    let _ = health_task.await;
    Ok(())
}

/// Reloads the certificate when either file changes (cert-manager and the
/// operator replace Secret files atomically). Existing connections keep their
/// session; new handshakes use the new certificate. A broken pair is logged
/// and the old one kept.
async fn watch_certificate(
    cert: Arc<ReloadingCert>,
    cert_path: PathBuf,
    key_path: PathBuf,
    every: Duration,
) {
    let mut seen = (modified(&cert_path), modified(&key_path));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = (modified(&cert_path), modified(&key_path));
        if now == seen {
            continue;
        }
        match load_certified_key(&cert_path, &key_path) {
            Ok(k) => {
                cert.0.store(Arc::new(k));
                tracing::info!(cert = %cert_path.display(), "serving certificate reloaded");
                seen = now;
            }
            Err(e) => {
                tracing::warn!(error = %e, "new serving certificate not usable; keeping the old one")
            }
        }
    }
}

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    // Secret volumes swap a symlink; metadata() follows it to the new file.
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}
