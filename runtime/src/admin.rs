//! The admin endpoints: `/healthz` (the process answers), `/readyz` (what it
//! still waits for) and `/metrics`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::http::Body;

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Answers an admin request: `waiting` lists what readiness still waits
/// for (empty: ready); `metrics` renders the exposition format.
pub fn respond(
    req: &Request<Incoming>,
    waiting: impl FnOnce() -> Vec<&'static str>,
    metrics: impl FnOnce() -> String,
) -> Response<Body> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" => {
            let waiting = waiting();
            if waiting.is_empty() {
                text(StatusCode::OK, "ready")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, waiting.join(", "))
            }
        }
        "/metrics" => {
            let mut resp = text(StatusCode::OK, metrics());
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}
