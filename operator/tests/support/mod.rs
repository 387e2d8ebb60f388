//! A scripted API server (kube-rs controller-rs style): it expects exactly
//! the listed requests, in order, answers each, and fails on anything else.
#![allow(dead_code)]

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::Value;

/// One expected request and the answer.
pub struct Expect {
    pub method: &'static str,
    pub uri: String,
    pub status: u16,
    pub reply: Value,
}

pub fn expect(method: &'static str, uri: impl Into<String>, status: u16, reply: Value) -> Expect {
    Expect {
        method,
        uri: uri.into(),
        status,
        reply,
    }
}

/// A client whose requests must follow `script`. Awaiting the handle (after
/// dropping every clone of the client) returns the request bodies in order.
pub fn scripted(script: Vec<Expect>) -> (kube::Client, tokio::task::JoinHandle<Vec<Value>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let verifier = tokio::spawn(async move {
        let mut bodies = Vec::new();
        for (i, e) in script.into_iter().enumerate() {
            let Some((req, send)) = handle.next_request().await else {
                panic!("request {} ({} {}) never came", i + 1, e.method, e.uri);
            };
            assert_eq!(
                (req.method().as_str(), req.uri().to_string()),
                (e.method, e.uri.clone()),
                "request {}",
                i + 1
            );
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            bodies.push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
            let mut resp = Response::new(Body::from(serde_json::to_vec(&e.reply).unwrap()));
            *resp.status_mut() = http::StatusCode::from_u16(e.status).unwrap();
            send.send_response(resp);
        }
        if let Some((req, _)) = handle.next_request().await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
        bodies
    });
    (kube::Client::new(service, "default"), verifier)
}

/// The API server's 404.
pub fn not_found() -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}
