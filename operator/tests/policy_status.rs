//! Each SecurityArtifactPolicy's `Ready` condition, against a scripted API
//! server: what CEL cannot check (registry patterns, the engine's compile)
//! shows as `Invalid` with the engine's message; a steady policy costs no
//! write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use portcullis_crds::SecurityArtifactPolicy;
use portcullis_operator::leadership::Leadership;
use portcullis_operator::metrics::Metrics;
use portcullis_operator::policy_status::{PolicyStatusContext, reconcile};
use serde_json::{Value, json};
use support::{expect, scripted};

const STATUS: &str = "/apis/portcullis.dev/v1alpha1/securityartifactpolicies/acr-only/status?&force=true&fieldManager=portcullis-operator-policy-status";

fn policy(spec: Value, status: Option<Value>) -> SecurityArtifactPolicy {
    let mut object = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityArtifactPolicy",
        "metadata": {"name": "acr-only", "generation": 3},
        "spec": spec,
    });
    if let Some(s) = status {
        object["status"] = s;
    }
    serde_json::from_value(object).unwrap()
}

async fn run(p: SecurityArtifactPolicy, script: Vec<support::Expect>, leader: bool) -> Vec<Value> {
    let (client, verifier) = scripted(script);
    let ctx = Arc::new(PolicyStatusContext {
        client,
        metrics: Arc::new(Metrics::new().unwrap()),
        leader: if leader {
            Leadership::always()
        } else {
            Leadership::follower()
        },
    });
    reconcile(Arc::new(p), ctx).await.unwrap();
    verifier.await.unwrap()
}

fn echo() -> Value {
    json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityArtifactPolicy", "metadata": {"name": "acr-only"},
           "spec": {"action": "Audit", "conditions": {"maxAllowedSeverities": {"high": 0}}}})
}

#[tokio::test]
async fn a_rule_the_engine_refuses_is_ready_false_with_the_reason() {
    let bad = json!({
        "action": "Deny",
        "conditions": {"maxAllowedSeverities": {"critical": 0}},
        "exemptions": [{"type": "Registry", "operator": "StartsWith", "value": "mcr.microsoft.com"}],
    });
    let bodies = run(
        policy(bad, None),
        vec![expect("PATCH", STATUS, 200, echo())],
        true,
    )
    .await;
    let status = &bodies[0]["status"];
    assert_eq!(status["observedGeneration"], 3);
    let ready = &status["conditions"][0];
    assert_eq!(ready["type"], "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Invalid");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("exemptions[0].value: registry pattern \"StartsWith\": this operator would let a look-alike host match"),
        "{ready}"
    );
}

#[tokio::test]
async fn a_valid_rule_is_ready_and_is_not_written_again() {
    let good = json!({"action": "Deny", "conditions": {"allowedRegistries": ["*.azurecr.io"]}});
    let bodies = run(
        policy(good.clone(), None),
        vec![expect("PATCH", STATUS, 200, echo())],
        true,
    )
    .await;
    let ready = &bodies[0]["status"]["conditions"][0];
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("Valid"))
    );
    // The same verdict for the same generation: no request at all.
    let status = bodies[0]["status"].clone();
    assert!(
        run(policy(good, Some(status)), Vec::new(), true)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_follower_writes_nothing() {
    let good = json!({"action": "Deny", "conditions": {"allowedRegistries": ["*.azurecr.io"]}});
    assert!(run(policy(good, None), Vec::new(), false).await.is_empty());
}
