//! Federated identity against a scripted API server: the finalizer, the
//! annotations on the webhook's ServiceAccount (each RegistryAccess with its
//! own field manager, never forced), Azure's pod label, the issuer from the
//! cluster's OIDC discovery document, exactly what to register on the
//! status, conflicts between RegistryAccesses, and the release of what a
//! RegistryAccess set when it is deleted or no longer federated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use kube::runtime::{reflector, watcher};
use portcullis_crds::RegistryAccess;
use portcullis_operator::identity::{
    FINALIZER, IdentityContext, WebhookIdentity, field_manager, reconcile,
};
use portcullis_operator::leadership::Leadership;
use portcullis_operator::metrics::Metrics;
use serde_json::{Value, json};
use support::{expect, scripted};

const ISSUER_URI: &str = "/.well-known/openid-configuration";
const ISSUER: &str = "https://oidc.prod-aks.azure.com/00000000-1111-2222-3333-444444444444/";

fn sa_uri(access: &str) -> String {
    format!(
        "/api/v1/namespaces/portcullis/serviceaccounts/portcullis-webhook?&fieldManager={}",
        field_manager(access)
    )
}

fn deployment_uri(access: &str) -> String {
    format!(
        "/apis/apps/v1/namespaces/portcullis/deployments/portcullis-webhook?&fieldManager={}",
        field_manager(access)
    )
}

fn status_uri(access: &str) -> String {
    format!(
        "/apis/portcullis.dev/v1alpha1/registryaccesses/{access}/status?&force=true&fieldManager=portcullis-operator"
    )
}

fn object_uri(access: &str) -> String {
    format!("/apis/portcullis.dev/v1alpha1/registryaccesses/{access}?")
}

fn azure(client: &str) -> Value {
    json!({"type": "AzureWorkloadIdentity", "azureWorkloadIdentity": {"tenantId": "tenant-1", "clientId": client}})
}

/// A RegistryAccess that already carries the finalizer.
fn access(name: &str, auth: Value) -> RegistryAccess {
    serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "RegistryAccess",
        "metadata": {"name": name, "generation": 2, "finalizers": [FINALIZER]},
        "spec": {"registries": ["*.azurecr.io"], "auth": auth},
    }))
    .unwrap()
}

fn deleting(mut a: RegistryAccess) -> RegistryAccess {
    a.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    a
}

fn echo(name: &str) -> Value {
    json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "RegistryAccess", "metadata": {"name": name},
           "spec": {"registries": ["x"], "auth": {"type": "Anonymous"}}})
}

fn sa() -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "portcullis-webhook"}})
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "portcullis-webhook"}})
}

/// Reconciles `access` with `others` in the controller's store (it is in
/// the store too) against `script`; whether it succeeded, and the bodies.
async fn run_with(
    access: RegistryAccess,
    others: &[RegistryAccess],
    script: Vec<support::Expect>,
) -> (bool, Vec<Value>) {
    let (client, verifier) = scripted(script);
    let (all, mut writer) = reflector::store();
    for o in others.iter().chain([&access]) {
        writer.apply_watcher_event(&watcher::Event::Apply(o.clone()));
    }
    let ctx = Arc::new(IdentityContext {
        client,
        webhook: WebhookIdentity {
            namespace: "portcullis".into(),
            service_account: "portcullis-webhook".into(),
            deployment: "portcullis-webhook".into(),
        },
        metrics: Arc::new(Metrics::new().unwrap()),
        leader: Leadership::always(),
        all,
    });
    let ok = reconcile(Arc::new(access), ctx.clone()).await.is_ok();
    drop(ctx);
    (ok, verifier.await.unwrap())
}

async fn run(access: RegistryAccess, script: Vec<support::Expect>) -> (bool, Vec<Value>) {
    run_with(access, &[], script).await
}

fn conditions(status_body: &Value) -> (Value, Value) {
    let c = &status_body["status"]["conditions"];
    assert_eq!(c[0]["type"], "Ready");
    assert_eq!(c[1]["type"], "Conflict");
    (c[0].clone(), c[1].clone())
}

#[tokio::test]
async fn a_new_registry_access_gets_the_finalizer_before_anything_is_written() {
    let mut a = access("acr", azure("client-1"));
    a.metadata.finalizers = None;
    let (ok, bodies) = run(
        a,
        vec![expect("PATCH", object_uri("acr"), 200, echo("acr"))],
    )
    .await;
    assert!(ok);
    assert_eq!(
        bodies[0],
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    );
}

#[tokio::test]
async fn without_rbac_for_the_finalizer_the_identity_is_still_configured() {
    let mut a = access("acr", azure("client-1"));
    a.metadata.finalizers = None;
    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": "registryaccesses.portcullis.dev \"acr\" is forbidden: cannot patch resource"});
    let (ok, bodies) = run(
        a,
        vec![
            expect("PATCH", object_uri("acr"), 403, forbidden),
            expect("GET", ISSUER_URI, 200, json!({"issuer": ISSUER})),
            expect("PATCH", sa_uri("acr"), 200, sa()),
            expect("PATCH", deployment_uri("acr"), 200, deployment()),
            expect("PATCH", status_uri("acr"), 200, echo("acr")),
        ],
    )
    .await;
    assert!(ok);
    let (ready, _) = conditions(&bodies[4]);
    assert_eq!(ready["reason"], "Configured");
}

#[tokio::test]
async fn azure_workload_identity_is_configured_and_published() {
    let (ok, bodies) = run(
        access("acr", azure("client-1")),
        vec![
            expect(
                "GET",
                ISSUER_URI,
                200,
                json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}openid/v1/jwks")}),
            ),
            expect("PATCH", sa_uri("acr"), 200, sa()),
            expect("PATCH", deployment_uri("acr"), 200, deployment()),
            expect("PATCH", status_uri("acr"), 200, echo("acr")),
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(
        bodies[1]["metadata"]["annotations"],
        json!({"azure.workload.identity/client-id": "client-1", "azure.workload.identity/tenant-id": "tenant-1"})
    );
    assert_eq!(
        bodies[1].get("secrets"),
        None,
        "only annotations are applied"
    );
    assert_eq!(
        bodies[2]["spec"]["template"]["metadata"]["labels"],
        json!({"azure.workload.identity/use": "true"})
    );
    let status = &bodies[3]["status"];
    assert_eq!(
        status["federatedCredential"],
        json!({"issuer": ISSUER, "subject": "system:serviceaccount:portcullis:portcullis-webhook", "audience": "api://AzureADTokenExchange"})
    );
    let (ready, conflict) = conditions(&bodies[3]);
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("Configured"))
    );
    assert_eq!(conflict["status"], "False");
    assert_eq!(status["observedGeneration"], 2);
}

#[tokio::test]
async fn aws_and_gcp_annotate_without_the_pod_label() {
    for (auth, annotation, value, audience) in [
        (
            json!({"type": "AwsWebIdentity", "awsWebIdentity": {"roleArn": "arn:aws:iam::123456789012:role/portcullis"}}),
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::123456789012:role/portcullis",
            "sts.amazonaws.com",
        ),
        (
            json!({"type": "GcpWorkloadIdentity", "gcpWorkloadIdentity": {"serviceAccount": "portcullis@p.iam.gserviceaccount.com"}}),
            "iam.gke.io/gcp-service-account",
            "portcullis@p.iam.gserviceaccount.com",
            "iam.googleapis.com",
        ),
        (
            json!({"type": "GcpWorkloadIdentity", "gcpWorkloadIdentity": {"serviceAccount": "portcullis@p.iam.gserviceaccount.com",
                   "workloadIdentityProvider": "projects/123/locations/global/workloadIdentityPools/clusters/providers/prod"}}),
            "iam.gke.io/gcp-service-account",
            "portcullis@p.iam.gserviceaccount.com",
            "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/clusters/providers/prod",
        ),
    ] {
        let (ok, bodies) = run(
            access("cloud", auth),
            vec![
                expect("GET", ISSUER_URI, 200, json!({"issuer": ISSUER})),
                expect("PATCH", sa_uri("cloud"), 200, sa()),
                expect("PATCH", status_uri("cloud"), 200, echo("cloud")),
            ],
        )
        .await;
        assert!(ok);
        assert_eq!(
            bodies[1]["metadata"]["annotations"],
            json!({annotation: value})
        );
        assert_eq!(
            bodies[2]["status"]["federatedCredential"]["audience"],
            audience
        );
    }
}

#[tokio::test]
async fn no_federation_and_failures_are_reported_on_status() {
    // Anonymous: nothing to configure, Ready with its reason, no writes but status.
    let (ok, bodies) = run(
        access("acr", json!({"type": "Anonymous"})),
        vec![expect("PATCH", status_uri("acr"), 200, echo("acr"))],
    )
    .await;
    assert!(ok);
    let (ready, _) = conditions(&bodies[0]);
    assert_eq!(ready["reason"], "NoFederation");
    assert!(
        bodies[0]["status"]
            .get("federatedCredential")
            .is_none_or(Value::is_null)
    );

    // No issuer in discovery: not Ready, nothing annotated.
    let (ok, bodies) = run(
        access("acr", azure("c")),
        vec![
            expect("GET", ISSUER_URI, 200, json!({"jwks_uri": "x"})),
            expect("PATCH", status_uri("acr"), 200, echo("acr")),
        ],
    )
    .await;
    assert!(!ok);
    let (ready, _) = conditions(&bodies[1]);
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("IssuerUnavailable"))
    );
}

#[tokio::test]
async fn conflicting_identities_are_a_conflict_on_both_and_nothing_is_overwritten() {
    let a = access("acr-a", azure("client-1"));
    let b = access("acr-b", azure("client-2"));
    // Other clouds and objects being deleted are no conflict.
    let aws = access(
        "ecr",
        json!({"type": "AwsWebIdentity", "awsWebIdentity": {"roleArn": "arn:aws:iam::123456789012:role/portcullis"}}),
    );
    let gone = deleting(access("acr-old", azure("client-0")));
    for (me, other, wants) in [(&a, &b, "client-2"), (&b, &a, "client-1")] {
        let name = me.metadata.name.clone().unwrap();
        // Only the status is written: no issuer read, no annotation, no label.
        let (ok, bodies) = run_with(
            me.clone(),
            &[other.clone(), aws.clone(), gone.clone()],
            vec![expect("PATCH", status_uri(&name), 200, echo(&name))],
        )
        .await;
        assert!(ok);
        let (ready, conflict) = conditions(&bodies[0]);
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("Conflict"))
        );
        assert_eq!(conflict["status"], "True");
        let message = conflict["message"].as_str().unwrap();
        assert!(
            message.contains(&format!(
                "RegistryAccess {} wants azure.workload.identity/client-id={wants}",
                other.metadata.name.as_deref().unwrap()
            )),
            "{message}"
        );
        assert!(
            !message.contains("ecr") && !message.contains("acr-old"),
            "{message}"
        );
        assert!(
            bodies[0]["status"]
                .get("federatedCredential")
                .is_none_or(Value::is_null)
        );
    }
    // The same identity twice is no conflict: both own the same values.
    let (ok, _) = run_with(
        access("acr-c", azure("client-1")),
        std::slice::from_ref(&a),
        vec![
            expect("GET", ISSUER_URI, 200, json!({"issuer": ISSUER})),
            expect("PATCH", sa_uri("acr-c"), 200, sa()),
            expect("PATCH", deployment_uri("acr-c"), 200, deployment()),
            expect("PATCH", status_uri("acr-c"), 200, echo("acr-c")),
        ],
    )
    .await;
    assert!(ok);
}

#[tokio::test]
async fn an_overwrite_the_api_server_refuses_is_a_conflict() {
    let refused = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
        "message": "Apply failed with 1 conflict: conflict with \"kubectl\": .metadata.annotations.azure.workload.identity/client-id"});
    let (ok, bodies) = run(
        access("acr", azure("client-1")),
        vec![
            expect("GET", ISSUER_URI, 200, json!({"issuer": ISSUER})),
            expect("PATCH", sa_uri("acr"), 409, refused),
            expect("PATCH", status_uri("acr"), 200, echo("acr")),
        ],
    )
    .await;
    assert!(!ok);
    let (ready, conflict) = conditions(&bodies[2]);
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("Conflict"))
    );
    assert_eq!(conflict["status"], "True");
    assert!(
        conflict["message"].as_str().unwrap().contains("kubectl"),
        "{conflict}"
    );
}

#[tokio::test]
async fn deleting_releases_exactly_what_it_set_then_the_finalizer() {
    let (ok, bodies) = run(
        deleting(access("acr", azure("client-1"))),
        vec![
            expect("PATCH", sa_uri("acr"), 200, sa()),
            expect("PATCH", deployment_uri("acr"), 200, deployment()),
            expect("PATCH", object_uri("acr"), 200, echo("acr")),
        ],
    )
    .await;
    assert!(ok);
    // Empty applies by this RegistryAccess's own field manager: the API
    // server removes what it alone set and keeps what others set too.
    assert_eq!(
        bodies[0],
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "portcullis-webhook", "namespace": "portcullis"}})
    );
    assert_eq!(
        bodies[1],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "portcullis-webhook", "namespace": "portcullis"}})
    );
    assert_eq!(
        bodies[2],
        json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
               {"op": "remove", "path": "/metadata/finalizers/0"}])
    );

    // A ServiceAccount already gone has nothing to release; a failure
    // keeps the finalizer.
    let (ok, _) = run(
        deleting(access("acr", azure("client-1"))),
        vec![
            expect("PATCH", sa_uri("acr"), 404, support::not_found()),
            expect("PATCH", deployment_uri("acr"), 404, support::not_found()),
            expect("PATCH", object_uri("acr"), 200, echo("acr")),
        ],
    )
    .await;
    assert!(ok);
    let (ok, _) = run(
        deleting(access("acr", azure("client-1"))),
        vec![expect("PATCH", sa_uri("acr"), 500, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "etcd"}))],
    )
    .await;
    assert!(!ok, "the finalizer stays until the release succeeded");
}

#[tokio::test]
async fn a_registry_access_no_longer_federated_releases_what_it_set() {
    let mut a = access("acr", json!({"type": "Anonymous"}));
    a.status = serde_json::from_value(json!({"federatedCredential": {"issuer": ISSUER, "subject": "system:serviceaccount:portcullis:portcullis-webhook", "audience": "api://AzureADTokenExchange"}})).unwrap();
    let (ok, bodies) = run(
        a,
        vec![
            expect("PATCH", sa_uri("acr"), 200, sa()),
            expect("PATCH", deployment_uri("acr"), 200, deployment()),
            expect("PATCH", status_uri("acr"), 200, echo("acr")),
        ],
    )
    .await;
    assert!(ok);
    assert!(bodies[0]["metadata"].get("annotations").is_none());
    let (ready, _) = conditions(&bodies[2]);
    assert_eq!(ready["reason"], "NoFederation");

    // From Azure to AWS: the new annotation, and the Azure pod label released.
    let mut a = access(
        "acr",
        json!({"type": "AwsWebIdentity", "awsWebIdentity": {"roleArn": "arn:aws:iam::123456789012:role/portcullis"}}),
    );
    a.status = serde_json::from_value(json!({"federatedCredential": {"issuer": ISSUER, "subject": "s", "audience": "api://AzureADTokenExchange"}})).unwrap();
    let (ok, bodies) = run(
        a,
        vec![
            expect("GET", ISSUER_URI, 200, json!({"issuer": ISSUER})),
            expect("PATCH", sa_uri("acr"), 200, sa()),
            expect("PATCH", deployment_uri("acr"), 200, deployment()),
            expect("PATCH", status_uri("acr"), 200, echo("acr")),
        ],
    )
    .await;
    assert!(ok);
    assert_eq!(
        bodies[1]["metadata"]["annotations"],
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/portcullis"})
    );
    assert!(bodies[2].get("spec").is_none(), "{}", bodies[2]);
}
