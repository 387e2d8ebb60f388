//! In a cluster: policies and RegistryAccess come from reflectors over the
//! CRDs (the webhook is ready only once both are listed), and each Audit/Deny
//! publishes an Event. The API server is the one part that cannot be real
//! here: a tower-test mock plays it, checking each request it receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use portcullis_webhook::admission::decode_review;
use portcullis_webhook::gate::{EventSink, Gate};
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::policies::{InvalidRulePolicy, PolicyStore, run_reflectors};
use portcullis_webhook::registry::access::{CredentialResolver, SecretStore};
use portcullis_webhook::registry::lookup::{ImageLookup, LookupSettings};
use portcullis_webhook::registry::{ClientSettings, RegistryClient};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const POLICIES: &str = "/apis/portcullis.dev/v1alpha1/securityartifactpolicies";
const ACCESS: &str = "/apis/portcullis.dev/v1alpha1/registryaccesses";

fn list(kind: &str, items: Vec<Value>) -> Response<Body> {
    let body = json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": "100"},
        "items": items,
    });
    Response::new(Body::from(serde_json::to_vec(&body).unwrap()))
}

/// The API server: answers the initial LISTs, holds WATCHes open, accepts
/// Events; every request is reported as (method, path and query, body).
fn api_server(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
) -> mpsc::UnboundedReceiver<(String, String, Value)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut watches = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let _ = tx.send((method.clone(), uri.clone(), body.clone()));
            if uri.contains("watch=true") {
                watches.push(send); // held open: no changes
            } else if method == "GET" && uri.starts_with(POLICIES) {
                send.send_response(list(
                    "SecurityArtifactPolicy",
                    vec![json!({
                        "apiVersion": "portcullis.dev/v1alpha1",
                        "kind": "SecurityArtifactPolicy",
                        "metadata": {"name": "deny-critical", "resourceVersion": "7"},
                        "spec": {"action": "Deny", "conditions": {"maxAllowedSeverities": {"critical": 0}}},
                    })],
                ));
            } else if method == "GET" && uri.starts_with(ACCESS) {
                send.send_response(list("RegistryAccess", Vec::new()));
            } else if method == "POST" && uri.contains("/events") {
                let mut resp = Response::new(Body::from(bytes.to_vec()));
                *resp.status_mut() = http::StatusCode::CREATED;
                send.send_response(resp);
            } else {
                let mut resp = Response::new(Body::from(b"{}".to_vec()));
                *resp.status_mut() = http::StatusCode::NOT_FOUND;
                send.send_response(resp);
            }
        }
    });
    rx
}

#[tokio::test]
async fn policies_come_from_reflectors_and_denials_publish_events() {
    support::install_crypto();
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut requests = api_server(handle);
    let client = kube::Client::new(service, "default");
    let metrics = Arc::new(Metrics::new().unwrap());
    let store = Arc::new(PolicyStore::default());
    assert!(!store.is_ready(), "ready before anything was listed");
    tokio::spawn(run_reflectors(
        client.clone(),
        store.clone(),
        metrics.clone(),
        InvalidRulePolicy::Deny,
    ));

    let deadline = Instant::now() + Duration::from_secs(5);
    while !store.is_ready() {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = store.snapshot();
    assert_eq!(snapshot.policies.rules().len(), 1);
    assert_eq!(snapshot.policies.rules()[0].name(), "deny-critical");
    assert!(snapshot.access.is_empty());
    assert!(metrics.render().contains("portcullis_policies_loaded 1"));

    let registry = RegistryClient::new(ClientSettings::default(), metrics.clone()).unwrap();
    let mut gate = Gate::new(
        store.clone(),
        ImageLookup::new(registry.clone(), LookupSettings::default(), metrics.clone()),
        CredentialResolver::new(
            SecretStore::kube(client.clone(), Duration::from_secs(30)),
            None,
            registry,
        ),
        metrics.clone(),
    );
    gate.deadline = Duration::from_secs(2);
    gate.events = Some(EventSink::start(
        Recorder::new(
            client,
            Reporter {
                controller: "portcullis-webhook".into(),
                instance: None,
            },
        ),
        16,
    ));
    // An image reference no registry could serve: denied without a lookup.
    let mut dep = support::kubectl(&["deployment", "web", "--image=nginx"], "shop");
    dep["spec"]["template"]["spec"]["containers"][0]["image"] =
        "Registry.Example.com/UPPER:1".into();
    let review =
        decode_review(&serde_json::to_vec(&support::review_for("CREATE", &dep, None)).unwrap())
            .unwrap();
    let resp = gate.review(&review).await;
    assert!(!resp.allowed);
    let message = resp.message.unwrap_or_default();
    assert!(message.ends_with("(reason InvalidReference)"), "{message}");

    // Requests seen: the two LISTs, the WATCHes, then exactly one Event.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let event = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (method, uri, body) = tokio::time::timeout(remaining, requests.recv())
            .await
            .expect("no Event published")
            .unwrap();
        seen.push(format!("{method} {uri}"));
        if method == "POST" {
            assert_eq!(uri, "/apis/events.k8s.io/v1/namespaces/shop/events?");
            break body;
        }
    };
    assert!(
        seen.iter()
            .any(|s| s.starts_with(&format!("GET {POLICIES}?")) && !s.contains("watch=true")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.starts_with(&format!("GET {ACCESS}?")) && !s.contains("watch=true")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.starts_with("GET ") || s.starts_with("POST /apis/events.k8s.io/")),
        "writes other than the Event: {seen:?}"
    );
    assert_eq!(event["reason"], "GatingDeny");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["action"], "Admission");
    assert_eq!(event["reportingController"], "portcullis-webhook");
    assert_eq!(event["regarding"]["kind"], "Deployment");
    assert_eq!(event["regarding"]["name"], "web");
    assert_eq!(event["regarding"]["namespace"], "shop");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("(reason InvalidReference)"),
        "{event}"
    );
}
