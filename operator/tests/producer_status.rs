//! Each TrustedProducer's `Ready` condition, against a scripted API server:
//! the keys (inline and from a Secret) and the trusted root load as the
//! webhook will load them, or the condition says which entry is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use portcullis_crds::TrustedProducer;
use portcullis_operator::leadership::Leadership;
use portcullis_operator::metrics::Metrics;
use portcullis_operator::producer_status::{ProducerStatusContext, reconcile};
use serde_json::{Value, json};
use support::{expect, not_found, scripted};

const STATUS: &str = "/apis/portcullis.dev/v1alpha1/trustedproducers/ci-scanner/status?&force=true&fieldManager=portcullis-operator-producer-status";
const SECRET: &str = "/api/v1/namespaces/portcullis/secrets/ci-key";

fn key() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/signed/keys/producer-p256.pub"),
    )
    .unwrap()
}

fn producer(spec: Value) -> TrustedProducer {
    serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "TrustedProducer",
        "metadata": {"name": "ci-scanner", "generation": 2},
        "spec": spec,
    }))
    .unwrap()
}

fn echo() -> Value {
    json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "TrustedProducer", "metadata": {"name": "ci-scanner"},
           "spec": {"publicKeys": [{"pem": "x"}]}})
}

async fn run(p: TrustedProducer, script: Vec<support::Expect>) -> Vec<Value> {
    let (client, verifier) = scripted(script);
    let ctx = Arc::new(ProducerStatusContext {
        client,
        metrics: Arc::new(Metrics::new().unwrap()),
        leader: Leadership::always(),
    });
    reconcile(Arc::new(p), ctx).await.unwrap();
    verifier.await.unwrap()
}

fn ready(bodies: &[Value]) -> Value {
    let status = &bodies.last().unwrap()["status"];
    assert_eq!(status["observedGeneration"], 2);
    status["conditions"][0].clone()
}

#[tokio::test]
async fn a_key_from_a_secret_loads() {
    use base64::Engine;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ci-key", "namespace": "portcullis"},
        "data": {"cosign.pub": base64::engine::general_purpose::STANDARD.encode(key())}});
    let bodies = run(
        producer(json!({"publicKeys": [{"secretRef": {"namespace": "portcullis", "name": "ci-key", "key": "cosign.pub"}}]})),
        vec![expect("GET", SECRET, 200, secret), expect("PATCH", STATUS, 200, echo())],
    )
    .await;
    let c = ready(&bodies);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("True"), Some("Loaded"))
    );
}

#[tokio::test]
async fn a_missing_secret_or_a_bad_key_is_ready_false_with_the_reason() {
    let bodies = run(
        producer(json!({"publicKeys": [{"secretRef": {"namespace": "portcullis", "name": "ci-key", "key": "cosign.pub"}}]})),
        vec![expect("GET", SECRET, 404, not_found()), expect("PATCH", STATUS, 200, echo())],
    )
    .await;
    let c = ready(&bodies);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("SecretNotFound"))
    );

    let weak = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/signed/keys/weak-rsa1024.pub"),
    )
    .unwrap();
    let bodies = run(
        producer(json!({"publicKeys": [{"pem": key()}, {"pem": weak}]})),
        vec![expect("PATCH", STATUS, 200, echo())],
    )
    .await;
    let c = ready(&bodies);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("UnparseableKey"))
    );
    assert!(
        c["message"].as_str().unwrap().contains("publicKeys[1]"),
        "{c}"
    );
}
