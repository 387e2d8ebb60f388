//! Webhook certificates against a scripted API server: created when absent,
//! rotated inside the renewal window with the old and the new CA both in
//! `caBundle` (and in the bundle before the Secret changes), left alone
//! outside it, and an expired CA pruned.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis_operator::certificates::{CertOutcome, CertSettings, reconcile_certificates};
use portcullis_operator::metrics::Metrics;
use serde_json::{Value, json};
use support::{expect, not_found, scripted};

const SECRET: &str = "/api/v1/namespaces/portcullis/secrets/portcullis-webhook-tls";
const APPLY: &str = "?&force=true&fieldManager=portcullis-operator";
const VWC: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/portcullis-webhook";
const DAY: i64 = 86_400;

fn settings() -> CertSettings {
    CertSettings {
        namespace: "portcullis".into(),
        secret: "portcullis-webhook-tls".into(),
        service: "portcullis-webhook".into(),
        webhook_configuration: "portcullis-webhook".into(),
        validity: Duration::from_secs(90 * DAY as u64),
        renew_before: Duration::from_secs(30 * DAY as u64),
    }
}

fn t0() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
}

fn vwc(bundle_b64: Option<&str>) -> Value {
    let mut hooks = Vec::new();
    for name in ["pods.portcullis.dev", "workloads.portcullis.dev"] {
        let mut cc = json!({"service": {"namespace": "portcullis", "name": "portcullis-webhook", "path": "/validate"}});
        if let Some(b) = bundle_b64 {
            cc["caBundle"] = b.into();
        }
        hooks.push(json!({"name": name, "clientConfig": cc, "sideEffects": "None", "admissionReviewVersions": ["v1"]}));
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "portcullis-webhook"}, "webhooks": hooks})
}

/// The Secret as the API server would return it after the apply `body`.
fn stored(body: &Value) -> Value {
    let mut s = body.clone();
    s["metadata"]["resourceVersion"] = "5".into();
    s
}

fn pems(b64: &str) -> Vec<Vec<u8>> {
    let bytes = STANDARD.decode(b64).unwrap();
    x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .map(|p| p.unwrap().contents)
        .collect()
}

/// Asserts the serving certificate names the Service and is signed by `ca`.
fn assert_issued_by(tls_crt_b64: &str, ca_der: &[u8]) {
    let leaf = &pems(tls_crt_b64)[0];
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).unwrap();
    leaf.verify_signature(Some(ca.public_key()))
        .expect("serving certificate signed by the CA");
    let sans = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert!(sans.contains("portcullis-webhook.portcullis.svc"), "{sans}");
}

async fn run(
    now: time::OffsetDateTime,
    script: Vec<support::Expect>,
) -> (CertOutcome, Vec<Value>, Metrics) {
    let (client, verifier) = scripted(script);
    let metrics = Metrics::new().unwrap();
    let outcome = reconcile_certificates(&client, &settings(), &metrics, now)
        .await
        .unwrap();
    drop(client);
    (outcome, verifier.await.unwrap(), metrics)
}

fn patched(uri: &str, body: Value) -> support::Expect {
    expect("PATCH", uri, 200, body)
}

#[tokio::test]
async fn certificates_are_created_rotated_with_both_cas_and_left_alone_otherwise() {
    // 1. Nothing yet: a CA and a serving certificate; caBundle before Secret.
    let (outcome, bodies, metrics) = run(
        t0(),
        vec![
            expect("GET", SECRET, 404, not_found()),
            expect("GET", VWC, 200, vwc(None)),
            patched(&format!("{VWC}?"), vwc(None)),
            patched(&format!("{SECRET}{APPLY}"), json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "portcullis-webhook-tls"}})),
        ],
    )
    .await;
    assert_eq!(outcome, CertOutcome::Created);
    let ops = bodies[2].as_array().unwrap();
    assert_eq!(
        ops.len(),
        2,
        "every webhook of the configuration gets the bundle"
    );
    assert_eq!(ops[0]["path"], "/webhooks/0/clientConfig/caBundle");
    assert_eq!(ops[1]["path"], "/webhooks/1/clientConfig/caBundle");
    let bundle1 = ops[0]["value"].as_str().unwrap().to_owned();
    let secret1 = stored(&bodies[3]);
    assert_eq!(secret1["type"], "kubernetes.io/tls");
    assert_eq!(secret1["data"]["ca.crt"], bundle1);
    let ca1 = pems(&bundle1);
    assert_eq!(ca1.len(), 1);
    assert_issued_by(secret1["data"]["tls.crt"].as_str().unwrap(), &ca1[0]);
    assert!(metrics.render().contains(&format!(
        "portcullis_operator_certificate_expiry_seconds {}",
        90 * DAY
    )));

    // 2. Outside the renewal window (10 days later): reads only.
    let (outcome, _, metrics) = run(
        t0() + time::Duration::days(10),
        vec![
            expect("GET", SECRET, 200, secret1.clone()),
            expect("GET", VWC, 200, vwc(Some(&bundle1))),
        ],
    )
    .await;
    assert_eq!(outcome, CertOutcome::Unchanged);
    assert!(metrics.render().contains(&format!(
        "portcullis_operator_certificate_expiry_seconds {}",
        80 * DAY
    )));

    // 3. Inside the window (70 days later, 20 left): new CA trusted next to
    //    the old one first, then the new certificate.
    let (outcome, bodies, _) = run(
        t0() + time::Duration::days(70),
        vec![
            expect("GET", SECRET, 200, secret1.clone()),
            expect("GET", VWC, 200, vwc(Some(&bundle1))),
            patched(&format!("{VWC}?"), vwc(Some(&bundle1))),
            patched(&format!("{SECRET}{APPLY}"), json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "portcullis-webhook-tls"}})),
        ],
    )
    .await;
    assert_eq!(outcome, CertOutcome::Rotated);
    let bundle2 = bodies[2][0]["value"].as_str().unwrap().to_owned();
    let cas = pems(&bundle2);
    assert_eq!(cas.len(), 2, "old and new CA during the overlap");
    assert_eq!(cas[1], ca1[0], "the old CA stays trusted");
    assert_ne!(cas[0], ca1[0]);
    let secret2 = stored(&bodies[3]);
    assert_issued_by(secret2["data"]["tls.crt"].as_str().unwrap(), &cas[0]);
    assert_ne!(secret2["data"]["tls.key"], secret1["data"]["tls.key"]);

    // 4. After the old CA expires (day 95): it leaves the bundle.
    let (outcome, bodies, _) = run(
        t0() + time::Duration::days(95),
        vec![
            expect("GET", SECRET, 200, secret2.clone()),
            expect("GET", VWC, 200, vwc(Some(&bundle2))),
            patched(&format!("{VWC}?"), vwc(Some(&bundle2))),
            patched(&format!("{SECRET}{APPLY}"), json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "portcullis-webhook-tls"}})),
        ],
    )
    .await;
    assert_eq!(outcome, CertOutcome::Pruned);
    let bundle3 = bodies[2][0]["value"].as_str().unwrap();
    assert_eq!(pems(bundle3), vec![cas[0].clone()]);
    assert_eq!(
        bodies[3]["data"]["tls.crt"], secret2["data"]["tls.crt"],
        "the serving certificate is kept"
    );
}

#[tokio::test]
async fn a_missing_webhook_configuration_is_a_clear_error_and_writes_nothing() {
    let (client, verifier) = scripted(vec![
        expect("GET", SECRET, 404, not_found()),
        expect("GET", VWC, 404, not_found()),
    ]);
    let err = reconcile_certificates(&client, &settings(), &Metrics::new().unwrap(), t0())
        .await
        .unwrap_err();
    drop(client);
    verifier.await.unwrap();
    assert!(
        err.to_string()
            .contains("ValidatingWebhookConfiguration portcullis-webhook not found"),
        "{err}"
    );
}
