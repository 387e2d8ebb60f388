//! In a cluster, the Secret a RegistryAccess names is watched by name (a
//! field selector in its namespace, never a cluster-wide Secret watch), and
//! a change to it is used at once. The API server is a tower-test mock that
//! reports every request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use http::{Request, Response};
use kube::client::Body;
use portcullis_crds::RegistryAccess;
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::reference::ImageRef;
use portcullis_webhook::registry::access::{
    AccessConfig, CredentialResolver, PodIdentity, SecretStore,
};
use portcullis_webhook::registry::{ClientSettings, RegistryClient};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

fn secret(rv: &str, password: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"namespace": "portcullis", "name": "team", "uid": "secret-uid", "resourceVersion": rv},
        "type": "kubernetes.io/basic-auth",
        "data": {
            "username": base64::engine::general_purpose::STANDARD.encode("robot"),
            "password": base64::engine::general_purpose::STANDARD.encode(password),
        },
    })
}

fn respond(body: &Value) -> Response<Body> {
    Response::new(Body::from(serde_json::to_vec(body).unwrap()))
}

#[tokio::test]
async fn a_registry_access_secret_is_watched_by_name_and_its_changes_are_used() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (change, changed) = oneshot::channel::<()>();
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut changed = Some(changed);
        let mut held = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let uri = req.uri().to_string();
            let _ = seen_tx.send(format!("{} {uri}", req.method()));
            if !uri.starts_with("/api/v1/namespaces/portcullis/secrets?") {
                let mut r = Response::new(Body::from(b"{}".to_vec()));
                *r.status_mut() = http::StatusCode::NOT_FOUND;
                send.send_response(r);
            } else if !uri.contains("watch=true") {
                send.send_response(respond(&json!({
                    "apiVersion": "v1", "kind": "SecretList",
                    "metadata": {"resourceVersion": "5"},
                    "items": [secret("5", "first-password")],
                })));
            } else if let Some(changed) = changed.take() {
                // The first watch delivers the change when the test says.
                tokio::spawn(async move {
                    let _ = changed.await;
                    let event =
                        json!({"type": "MODIFIED", "object": secret("6", "second-password")});
                    send.send_response(Response::new(Body::from(
                        format!("{event}\n").into_bytes(),
                    )));
                });
            } else {
                held.push(send);
            }
        }
    });
    let client = kube::Client::new(service, "default");
    let metrics = Arc::new(Metrics::new().unwrap());
    let registry = RegistryClient::new(ClientSettings::default(), metrics).unwrap();
    let resolver = CredentialResolver::new(
        SecretStore::kube(client, Duration::from_secs(30)),
        None,
        registry,
    );
    let access: RegistryAccess = serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "RegistryAccess",
        "metadata": {"name": "team", "uid": "access-uid"},
        "spec": {"registries": ["registry.example.com"],
                 "auth": {"type": "BasicSecret", "secretRef": {"namespace": "portcullis", "name": "team"}}},
    }))
    .unwrap();
    let (config, errors) = AccessConfig::compile([access]);
    assert!(errors.is_empty());
    let image = ImageRef::parse("registry.example.com/team/app:1").unwrap();
    let pod = PodIdentity {
        namespace: "shop",
        pull_secrets: &[],
        service_account: "default",
    };
    let basic = |p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("robot:{p}"))
        )
    };

    let first = resolver.credentials(&config, &image, pod).await.unwrap();
    assert_eq!(
        first.basic_header().as_deref(),
        Some(basic("first-password").as_str())
    );
    assert!(
        first.fingerprint().ends_with("|secret:secret-uid@5"),
        "{}",
        first.fingerprint()
    );

    change.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        let c = resolver.credentials(&config, &image, pod).await.unwrap();
        if c.basic_header().as_deref() == Some(basic("second-password").as_str()) {
            break c;
        }
        assert!(Instant::now() < deadline, "the changed Secret was not used");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A new version is a new identity for the caches; the RegistryAccess
    // part stays.
    assert!(second.fingerprint().ends_with("|secret:secret-uid@6"));
    assert!(second.fingerprint().starts_with("ra:team:access-uid:"));

    // One LIST and the WATCHes, all of that one Secret by name in its
    // namespace; the change came through the watch, not another read.
    drop(resolver);
    let mut requests = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(200), seen.recv()).await {
        requests.push(r);
    }
    assert!(
        requests.iter().all(
            |r| r.starts_with("GET /api/v1/namespaces/portcullis/secrets?")
                && r.contains("fieldSelector=metadata.name%3Dteam")
        ),
        "{requests:#?}"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| !r.contains("watch=true"))
            .count(),
        1,
        "{requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("watch=true")),
        "{requests:#?}"
    );
}

#[tokio::test]
async fn without_rbac_to_watch_the_secret_is_read_directly_without_waiting() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let uri = req.uri().to_string();
            let _ = seen_tx.send(format!("{} {uri}", req.method()));
            if uri.starts_with("/api/v1/namespaces/portcullis/secrets/team") {
                send.send_response(respond(&secret("5", "first-password")));
            } else {
                let mut r = Response::new(Body::from(
                    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "Forbidden", "code": 403,
                        "message": "secrets is forbidden: cannot list resource \"secrets\" in the namespace \"portcullis\""}))
                    .unwrap(),
                ));
                *r.status_mut() = http::StatusCode::FORBIDDEN;
                send.send_response(r);
            }
        }
    });
    let client = kube::Client::new(service, "default");
    let registry =
        RegistryClient::new(ClientSettings::default(), Arc::new(Metrics::new().unwrap())).unwrap();
    let resolver = CredentialResolver::new(
        SecretStore::kube(client, Duration::from_secs(30)),
        None,
        registry,
    );
    let access: RegistryAccess = serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "RegistryAccess",
        "metadata": {"name": "team"},
        "spec": {"registries": ["registry.example.com"],
                 "auth": {"type": "BasicSecret", "secretRef": {"namespace": "portcullis", "name": "team"}}},
    }))
    .unwrap();
    let (config, _) = AccessConfig::compile([access]);
    let image = ImageRef::parse("registry.example.com/team/app:1").unwrap();
    let pod = PodIdentity {
        namespace: "shop",
        pull_secrets: &[],
        service_account: "default",
    };
    for _ in 0..3 {
        let started = Instant::now();
        let c = resolver.credentials(&config, &image, pod).await.unwrap();
        assert!(c.basic_header().is_some());
        // Not the 2 s a new watch is given to list.
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
    drop(resolver);
    let mut requests = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(200), seen.recv()).await {
        requests.push(r);
    }
    // One direct read (then its cache), and only ever that Secret.
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.starts_with("GET /api/v1/namespaces/portcullis/secrets/team"))
            .count(),
        1,
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.contains("/api/v1/namespaces/portcullis/secrets")),
        "{requests:#?}"
    );
}
