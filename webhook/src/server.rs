//! The HTTPS admission endpoint and the plain-HTTP health/metrics endpoint,
//! with certificate reload and graceful shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};

use crate::config::Config;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::policies::PolicyStore;

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
}

/// The HTTPS router: `POST /validate`.
pub fn admission_router(state: AppState, max_body: usize) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The plain-HTTP router: `/healthz`, `/readyz`, `/metrics`.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn validate(State(state): State<AppState>, body: Bytes) -> Response {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("not an AdmissionReview: {e}")),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return bad_request(format!("AdmissionReview without a request: {e}")),
    };
    let response = state.gate.review(&request).await;
    match serde_json::to_vec(&response.into_review()) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the response: {e}"),
        )
            .into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let policies = state.store.is_ready();
    let tls = state.tls_ready.load(Ordering::Acquire);
    if policies && tls {
        (StatusCode::OK, "ready").into_response()
    } else {
        let mut waiting = Vec::new();
        if !policies {
            waiting.push("policies not synced");
        }
        if !tls {
            waiting.push("serving certificate not loaded");
        }
        (StatusCode::SERVICE_UNAVAILABLE, waiting.join(", ")).into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Serving failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate or key could not be loaded.
    #[error("loading the serving certificate {cert} / {key}: {source}")]
    Tls {
        /// Certificate path.
        cert: PathBuf,
        /// Key path.
        key: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A listener could not be bound or failed.
    #[error("serving on {addr}: {source}")]
    Listen {
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Serves until SIGTERM or Ctrl-C, then drains connections.
pub async fn serve(config: &Config, state: AppState) -> Result<(), ServeError> {
    let tls = RustlsConfig::from_pem_file(&config.tls_cert, &config.tls_key)
        .await
        .map_err(|source| ServeError::Tls {
            cert: config.tls_cert.clone(),
            key: config.tls_key.clone(),
            source,
        })?;
    state.tls_ready.store(true, Ordering::Release);
    tokio::spawn(watch_certificate(
        tls.clone(),
        config.tls_cert.clone(),
        config.tls_key.clone(),
        config.tls_reload_interval,
    ));

    let handle = axum_server::Handle::new();
    let health_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.metrics_listen,
            source,
        })?;
    let health = health_router(state.clone());
    let shutdown_handle = handle.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining connections");
        shutdown_handle.graceful_shutdown(Some(Duration::from_secs(10)));
        let _ = stop_tx.send(true);
    });
    let mut health_stop = stop_rx.clone();
    let health_task = tokio::spawn(async move {
        axum::serve(health_listener, health)
            .with_graceful_shutdown(async move {
                let _ = health_stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, "portcullis-webhook serving");
    let app = admission_router(state, config.max_body_bytes);
    axum_server::bind_rustls(config.listen, tls)
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    if let Ok(Err(e)) = health_task.await {
        tracing::warn!(error = %e, "health endpoint stopped with an error");
    }
    Ok(())
}

/// Reloads the certificate when either file changes (cert-manager and the
/// operator replace Secret files atomically). Existing connections keep their
/// session; new handshakes use the new certificate. A broken pair is logged
/// and the old one kept.
async fn watch_certificate(tls: RustlsConfig, cert: PathBuf, key: PathBuf, every: Duration) {
    let mut seen = (modified(&cert), modified(&key));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = (modified(&cert), modified(&key));
        if now == seen {
            continue;
        }
        match tls.reload_from_pem_file(&cert, &key).await {
            Ok(()) => {
                tracing::info!(cert = %cert.display(), "serving certificate reloaded");
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
