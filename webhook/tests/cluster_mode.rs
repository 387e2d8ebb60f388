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
use portcullis_webhook::owners::OwnerVerifier;
use portcullis_webhook::policies::{InvalidRulePolicy, PolicyStore, run_reflectors};
use portcullis_webhook::registry::access::{CredentialResolver, SecretStore};
use portcullis_webhook::registry::lookup::{ImageLookup, LookupSettings};
use portcullis_webhook::registry::{ClientSettings, RegistryClient};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const POLICIES: &str = "/apis/portcullis.dev/v1alpha1/securityartifactpolicies";
const ACCESS: &str = "/apis/portcullis.dev/v1alpha1/registryaccesses";
const PRODUCERS: &str = "/apis/portcullis.dev/v1alpha1/trustedproducers";

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
            } else if method == "GET" && uri.starts_with(PRODUCERS) {
                send.send_response(list("TrustedProducer", Vec::new()));
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
    let body = serde_json::to_vec(&support::review_for("CREATE", &dep, None)).unwrap();
    let review = decode_review(&body).unwrap();
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

/// The API for the owner-verification scenarios: one rule that exempts the
/// `web` workload, one rule that does not compile, and one ReplicaSet
/// (`web-7d9f`, UID `rs-1`, controlled by Deployment `web`).
fn owners_api(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
) -> mpsc::UnboundedReceiver<(String, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut watches = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let _ = tx.send((method.clone(), uri.clone()));
            if uri.contains("watch=true") {
                watches.push(send);
            } else if uri.starts_with(POLICIES) {
                send.send_response(list(
                    "SecurityArtifactPolicy",
                    vec![
                        json!({
                            "apiVersion": "portcullis.dev/v1alpha1",
                            "kind": "SecurityArtifactPolicy",
                            "metadata": {"name": "deny-critical", "resourceVersion": "7"},
                            "spec": {
                                "action": "Deny",
                                "conditions": {"maxAllowedSeverities": {"critical": 0}},
                                "exemptions": [{"type": "Workload", "value": "web"}]
                            },
                        }),
                        // CEL cannot see that a StartsWith on a registry lets
                        // look-alike hosts in; the engine refuses it, and the
                        // rule fails closed in its scope.
                        json!({
                            "apiVersion": "portcullis.dev/v1alpha1",
                            "kind": "SecurityArtifactPolicy",
                            "metadata": {"name": "broken", "resourceVersion": "8"},
                            "spec": {
                                "action": "Deny",
                                "scope": [{"matcherType": "Namespace", "values": ["payments"]}],
                                "conditions": {"maxAllowedSeverities": {"critical": 0}},
                                "exemptions": [{"type": "Registry", "operator": "StartsWith", "value": "mcr.microsoft.com"}]
                            },
                        }),
                    ],
                ));
            } else if uri.starts_with(ACCESS) {
                send.send_response(list("RegistryAccess", Vec::new()));
            } else if uri.starts_with(PRODUCERS) {
                send.send_response(list("TrustedProducer", Vec::new()));
            } else if method == "GET"
                && uri.starts_with("/apis/apps/v1/namespaces/shop/replicasets/web-7d9f")
            {
                let body = json!({
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadata",
                    "metadata": {
                        "name": "web-7d9f", "namespace": "shop", "uid": "rs-1",
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-1", "controller": true}]
                    }
                });
                send.send_response(Response::new(Body::from(
                    serde_json::to_vec(&body).unwrap(),
                )));
            } else {
                let mut resp = Response::new(Body::from(
                    br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_vec(),
                ));
                *resp.status_mut() = http::StatusCode::NOT_FOUND;
                send.send_response(resp);
            }
        }
    });
    rx
}

/// A Pod's `ownerReferences` name its workload only when a controller made
/// the request and, in a cluster, the owner exists with that UID; anyone who
/// can create Pods could otherwise exempt themselves.
#[tokio::test]
async fn owner_references_are_verified_and_invalid_rules_fail_closed() {
    support::install_crypto();
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut requests = owners_api(handle);
    let client = kube::Client::new(service, "default");
    let metrics = Arc::new(Metrics::new().unwrap());
    let store = Arc::new(PolicyStore::default());
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
    assert!(metrics.render().contains("portcullis_policies_invalid 1"));
    let registry = RegistryClient::new(ClientSettings::default(), metrics.clone()).unwrap();
    let mut gate = Gate::new(
        store.clone(),
        ImageLookup::new(registry.clone(), LookupSettings::default(), metrics.clone()),
        CredentialResolver::new(SecretStore::empty(), None, registry),
        metrics.clone(),
    );
    gate.owners = Some(OwnerVerifier::new(client, Duration::from_secs(30)));

    // A Pod whose image cannot be read: only an exemption can admit it (the
    // review's body; the decoded review borrows from it).
    let pod = |user: &str, uid: &str, namespace: &str, image: &str| {
        let object = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-7d9f-x1", "namespace": namespace,
                "labels": {"pod-template-hash": "7d9f"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": uid, "controller": true}]
            },
            "spec": {"containers": [{"name": "c", "image": image}]}
        });
        let mut review = support::review_for("CREATE", &object, None);
        review["request"]["userInfo"]["username"] = user.into();
        serde_json::to_vec(&review).unwrap()
    };
    let controller = "system:serviceaccount:kube-system:replicaset-controller";
    let drain = |requests: &mut mpsc::UnboundedReceiver<(String, String)>| {
        let mut seen = Vec::new();
        while let Ok((m, u)) = requests.try_recv() {
            seen.push(format!("{m} {u}"));
        }
        seen.into_iter()
            .filter(|r| r.contains("/replicasets/"))
            .collect::<Vec<_>>()
    };
    drain(&mut requests);

    // The real owner, named by the ReplicaSet controller: exempt.
    let d = gate
        .review(&decode_review(&pod(controller, "rs-1", "shop", "UPPER/Case:1")).unwrap())
        .await;
    assert!(d.allowed, "{d:?}");
    assert_eq!(
        drain(&mut requests),
        ["GET /apis/apps/v1/namespaces/shop/replicasets/web-7d9f"],
        "one metadata GET for the owner"
    );
    // The owner's name with a made-up UID: judged as itself.
    let d = gate
        .review(&decode_review(&pod(controller, "forged", "shop", "UPPER/Case:1")).unwrap())
        .await;
    assert!(!d.allowed, "{d:?}");
    assert!(d.message.unwrap().ends_with("(reason InvalidReference)"));
    // The real name and UID, copied into a Pod a tenant creates: not even
    // looked up.
    let d = gate
        .review(&decode_review(&pod("alice", "rs-1", "shop", "UPPER/Case:1")).unwrap())
        .await;
    assert!(!d.allowed, "{d:?}");
    assert!(drain(&mut requests).is_empty());

    // The invalid Deny rule denies in its scope, saying why.
    let d = gate
        .review(&decode_review(&pod("alice", "x", "payments", "10.0.0.1:5000/app:1")).unwrap())
        .await;
    assert!(!d.allowed);
    let message = d.message.unwrap();
    assert!(
        message.contains("The rule is invalid and applies its action to every image in its scope until it is fixed")
            && message.contains("(rule broken)"),
        "{message}"
    );
}
