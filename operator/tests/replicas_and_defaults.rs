//! A follower replica makes no request at all; the default rule is created
//! once and a user's version is never overwritten.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use portcullis_crds::RuleSource;
use portcullis_operator::default_rule::{DefaultRule, ensure_default_rule};
use portcullis_operator::identity::{self, IdentityContext, WebhookIdentity};
use portcullis_operator::leadership::Leadership;
use portcullis_operator::metrics::Metrics;
use portcullis_operator::rule_source::{self, Context};
use serde_json::json;
use support::{expect, not_found, scripted};

const DEFAULT: &str =
    "/apis/portcullis.dev/v1alpha1/securityartifactpolicies/default-audit-high-critical";

#[tokio::test]
async fn a_follower_replica_reads_and_writes_nothing() {
    let (client, verifier) = scripted(Vec::new());
    let metrics = Arc::new(Metrics::new().unwrap());
    let follower = Leadership::follower();
    let source: RuleSource = serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "RuleSource", "metadata": {"name": "portal", "generation": 1},
        "spec": {"url": "https://portal.example.com/rules", "interval": "5m"}}))
    .unwrap();
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics: metrics.clone(),
        recorder: None,
        fetch_timeout: Duration::from_secs(1),
        leader: follower.clone(),
    });
    rule_source::reconcile(Arc::new(source), ctx.clone())
        .await
        .unwrap();
    let access = serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "RegistryAccess", "metadata": {"name": "acr"},
        "spec": {"registries": ["*.azurecr.io"], "auth": {"type": "AzureWorkloadIdentity", "azureWorkloadIdentity": {"tenantId": "t", "clientId": "c"}}}}))
    .unwrap();
    let ictx = Arc::new(IdentityContext {
        client: client.clone(),
        webhook: WebhookIdentity {
            namespace: "portcullis".into(),
            service_account: "w".into(),
            deployment: "w".into(),
        },
        metrics,
        leader: follower,
        all: kube::runtime::reflector::store().0,
    });
    identity::reconcile(Arc::new(access), ictx.clone())
        .await
        .unwrap();
    drop((ctx, ictx, client));
    assert!(verifier.await.unwrap().is_empty());
}

#[tokio::test]
async fn the_default_rule_is_created_once_and_never_overwritten() {
    // Absent: created with create (POST), never with an update.
    let (client, verifier) = scripted(vec![
        expect("GET", DEFAULT, 404, not_found()),
        expect(
            "POST",
            "/apis/portcullis.dev/v1alpha1/securityartifactpolicies?",
            201,
            json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityArtifactPolicy",
            "metadata": {"name": "default-audit-high-critical"},
            "spec": {"action": "Audit", "conditions": {"maxAllowedSeverities": {"high": 0}}}}),
        ),
    ]);
    assert_eq!(
        ensure_default_rule(&client).await.unwrap(),
        DefaultRule::Created
    );
    drop(client);
    let bodies = verifier.await.unwrap();
    assert_eq!(bodies[1]["spec"]["action"], "Audit");
    assert_eq!(
        bodies[1]["spec"]["conditions"]["maxAllowedSeverities"]["high"],
        0
    );
    assert!(
        bodies[1]["spec"]
            .get("scope")
            .is_none_or(|s| s.as_array().is_some_and(Vec::is_empty)),
        "cluster-wide"
    );

    // A user's edited version (now Deny, priority 1): left alone.
    let (client, verifier) = scripted(vec![expect(
        "GET",
        DEFAULT,
        200,
        json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityArtifactPolicy",
        "metadata": {"name": "default-audit-high-critical"},
        "spec": {"action": "Deny", "priority": 1, "conditions": {"maxAllowedSeverities": {"critical": 0}}}}),
    )]);
    assert_eq!(
        ensure_default_rule(&client).await.unwrap(),
        DefaultRule::Present
    );
    drop(client);
    verifier.await.unwrap();

    // Created by someone else in between (409): theirs stays.
    let (client, verifier) = scripted(vec![
        expect("GET", DEFAULT, 404, not_found()),
        expect(
            "POST",
            "/apis/portcullis.dev/v1alpha1/securityartifactpolicies?",
            409,
            json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "exists"}),
        ),
    ]);
    assert_eq!(
        ensure_default_rule(&client).await.unwrap(),
        DefaultRule::Present
    );
    drop(client);
    verifier.await.unwrap();
}

#[tokio::test]
async fn losing_the_lease_mid_sync_stops_writing_at_once() {
    use http::{Request, Response};
    use kube::client::Body;
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let leader = Leadership::always();
    let flip = leader.clone();
    let api = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            seen.push(format!("{} {}", req.method(), req.uri()));
            let reply = if req.uri().path().ends_with("/configmaps/rules") {
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rules", "namespace": "portcullis"},
                       "data": {"rules.yaml": "rules:\n- {name: a, action: Audit, conditions: {maxAllowedSeverities: {high: 0}}}\n"}})
            } else {
                // The list of policies: the lease is lost while it is answered.
                flip.set(false);
                json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityArtifactPolicyList", "metadata": {}, "items": []})
            };
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&reply).unwrap(),
            )));
        }
        seen
    });
    let source: RuleSource = serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "RuleSource", "metadata": {"name": "cm", "generation": 1},
        "spec": {"configMapRef": {"namespace": "portcullis", "name": "rules"}, "interval": "5m"}}))
    .unwrap();
    let ctx = Arc::new(Context {
        client: kube::Client::new(service, "default"),
        metrics: Arc::new(Metrics::new().unwrap()),
        recorder: None,
        fetch_timeout: Duration::from_secs(1),
        leader,
    });
    rule_source::reconcile(Arc::new(source), ctx.clone())
        .await
        .unwrap();
    drop(ctx);
    let seen = api.await.unwrap();
    assert_eq!(
        seen,
        [
            "GET /api/v1/namespaces/portcullis/configmaps/rules",
            "GET /apis/portcullis.dev/v1alpha1/securityartifactpolicies?"
        ],
        "no write after the lease was lost"
    );
}

#[tokio::test]
async fn missing_crds_stop_start_up_with_a_hint() {
    let crd =
        |name: &str| format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
    let present = |name: &str| {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
        "spec": {"group": "portcullis.dev", "names": {"kind": "X", "plural": "x"}, "scope": "Cluster", "versions": []}})
    };
    let (client, verifier) = scripted(vec![
        expect(
            "GET",
            crd("rulesources.portcullis.dev"),
            200,
            present("rulesources.portcullis.dev"),
        ),
        expect(
            "GET",
            crd("securityartifactpolicies.portcullis.dev"),
            404,
            not_found(),
        ),
    ]);
    let err = portcullis_operator::check_crds(&client).await.unwrap_err();
    drop(client);
    verifier.await.unwrap();
    assert_eq!(
        err.to_string(),
        "CustomResourceDefinition securityartifactpolicies.portcullis.dev is not installed: run `kubectl apply -f config/crd/` first"
    );
}
