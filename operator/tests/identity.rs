//! Federated identity against a scripted API server: annotations on the
//! webhook's ServiceAccount, Azure's pod label, the issuer from the cluster's
//! OIDC discovery document, and exactly what to register on the status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use portcullis_crds::RegistryAccess;
use portcullis_operator::identity::{IdentityContext, WebhookIdentity, reconcile};
use portcullis_operator::leadership::Leadership;
use portcullis_operator::metrics::Metrics;
use serde_json::{Value, json};
use support::{expect, scripted};

const ISSUER_URI: &str = "/.well-known/openid-configuration";
const SA: &str = "/api/v1/namespaces/portcullis/serviceaccounts/portcullis-webhook?&force=true&fieldManager=portcullis-operator";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/portcullis/deployments/portcullis-webhook?&force=true&fieldManager=portcullis-operator";
const ISSUER: &str = "https://oidc.prod-aks.azure.com/00000000-1111-2222-3333-444444444444/";

fn access(auth: Value) -> RegistryAccess {
    serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "RegistryAccess",
        "metadata": {"name": "acr", "generation": 2},
        "spec": {"registries": ["*.azurecr.io"], "auth": auth},
    }))
    .unwrap()
}

fn status_uri() -> String {
    "/apis/portcullis.dev/v1alpha1/registryaccesses/acr/status?&force=true&fieldManager=portcullis-operator".into()
}

fn echo() -> Value {
    json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "RegistryAccess", "metadata": {"name": "acr"},
           "spec": {"registries": ["x"], "auth": {"type": "Anonymous"}}})
}

async fn run(access: RegistryAccess, script: Vec<support::Expect>) -> (bool, Vec<Value>) {
    let (client, verifier) = scripted(script);
    let ctx = Arc::new(IdentityContext {
        client,
        webhook: WebhookIdentity {
            namespace: "portcullis".into(),
            service_account: "portcullis-webhook".into(),
            deployment: "portcullis-webhook".into(),
        },
        metrics: Arc::new(Metrics::new().unwrap()),
        leader: Leadership::always(),
    });
    let ok = reconcile(Arc::new(access), ctx.clone()).await.is_ok();
    drop(ctx);
    (ok, verifier.await.unwrap())
}

#[tokio::test]
async fn azure_workload_identity_is_configured_and_published() {
    let (ok, bodies) = run(
        access(json!({"type": "AzureWorkloadIdentity", "azureWorkloadIdentity": {"tenantId": "tenant-1", "clientId": "client-1"}})),
        vec![
            expect("GET", ISSUER_URI, 200, json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}openid/v1/jwks")})),
            expect("PATCH", SA, 200, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "portcullis-webhook"}})),
            expect("PATCH", DEPLOYMENT, 200, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "portcullis-webhook"}})),
            expect("PATCH", status_uri(), 200, echo()),
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
        bodies[2]["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    let status = &bodies[3]["status"];
    assert_eq!(
        status["federatedCredential"],
        json!({"issuer": ISSUER, "subject": "system:serviceaccount:portcullis:portcullis-webhook", "audience": "api://AzureADTokenExchange"})
    );
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][0]["reason"], "Configured");
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
    ] {
        let (ok, bodies) = run(
            access(auth),
            vec![
                expect("GET", ISSUER_URI, 200, json!({"issuer": ISSUER})),
                expect("PATCH", SA, 200, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "portcullis-webhook"}})),
                expect("PATCH", status_uri(), 200, echo()),
            ],
        )
        .await;
        assert!(ok);
        assert_eq!(bodies[1]["metadata"]["annotations"][annotation], value);
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
        access(json!({"type": "Anonymous"})),
        vec![expect("PATCH", status_uri(), 200, echo())],
    )
    .await;
    assert!(ok);
    assert_eq!(
        bodies[0]["status"]["conditions"][0]["reason"],
        "NoFederation"
    );
    assert!(
        bodies[0]["status"]
            .get("federatedCredential")
            .is_none_or(Value::is_null)
    );

    // No issuer in discovery: not Ready, nothing annotated.
    let (ok, bodies) = run(
        access(json!({"type": "AzureWorkloadIdentity", "azureWorkloadIdentity": {"tenantId": "t", "clientId": "c"}})),
        vec![expect("GET", ISSUER_URI, 200, json!({"jwks_uri": "x"})), expect("PATCH", status_uri(), 200, echo())],
    )
    .await;
    assert!(!ok);
    let c = &bodies[1]["status"]["conditions"][0];
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("IssuerUnavailable"))
    );
}
