//! RuleSource sync scenarios. The API server is a tower-test mock that
//! checks the exact method, path and query of every request, in order, and
//! fails on any request the scenario does not expect. The portal is a real
//! local HTTPS server (its own CA, a bearer token, ETags) serving documents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use portcullis_crds::RuleSource;
use portcullis_operator::leadership::Leadership;
use portcullis_operator::metrics::Metrics;
use portcullis_operator::rule_source::{Context, reconcile};
use serde_json::{Value, json};
use support::{Expect, expect, scripted};

const SAPS: &str = "/apis/portcullis.dev/v1alpha1/securityartifactpolicies";
const APPLY: &str = "?&force=true&fieldManager=portcullis-operator";
const STATUS: &str = "/apis/portcullis.dev/v1alpha1/rulesources/portal/status?&force=true&fieldManager=portcullis-operator";
const SECRET: &str = "/api/v1/namespaces/portcullis/secrets/portal-token";

/// What the portal serves.
#[derive(Clone)]
struct Served {
    status: u16,
    body: String,
    etag: Option<String>,
}

struct Portal {
    url: String,
    ca_pem: String,
    served: Arc<Mutex<Served>>,
    /// (authorization, if-none-match) of each request.
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn portal() -> Portal {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        leaf.pem().into_bytes(),
        leaf_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let served = Arc::new(Mutex::new(Served {
        status: 200,
        body: String::new(),
        etag: None,
    }));
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let (s, log) = (served.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/rules",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (served, seen) = (s.lock().unwrap().clone(), log.clone());
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                seen.lock()
                    .unwrap()
                    .push((h("authorization"), h("if-none-match")));
                let mut resp = axum::response::Response::builder();
                if h("authorization") != "Bearer portal-token" {
                    return resp.status(401).body(axum::body::Body::empty()).unwrap();
                }
                if let Some(etag) = &served.etag {
                    if h("if-none-match") == *etag {
                        return resp.status(304).body(axum::body::Body::empty()).unwrap();
                    }
                    resp = resp.header("etag", etag);
                }
                resp.status(served.status)
                    .body(axum::body::Body::from(served.body))
                    .unwrap()
            }
        }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        axum_server::from_tcp_rustls(listener, tls)
            .unwrap()
            .serve(app.into_make_service()),
    );
    Portal {
        url: format!("https://localhost:{port}/rules"),
        ca_pem: ca.pem(),
        served,
        seen,
    }
}

impl Portal {
    fn serve(&self, status: u16, body: &str, etag: Option<&str>) {
        *self.served.lock().unwrap() = Served {
            status,
            body: body.into(),
            etag: etag.map(str::to_owned),
        };
    }
}

/// Runs `reconcile` against an API server that expects exactly `script`, and
/// returns the request bodies in order.
async fn scenario(source: RuleSource, script: Vec<Expect>) -> (Result<(), String>, Vec<Value>) {
    let (result, bodies, _) = scenario_with_metrics(source, script, Leadership::always()).await;
    (result, bodies)
}

/// [`scenario`] with the leadership given, also returning `/metrics` after it.
async fn scenario_with_metrics(
    source: RuleSource,
    script: Vec<Expect>,
    leader: Leadership,
) -> (Result<(), String>, Vec<Value>, String) {
    let (client, verifier) = scripted(script);
    let ctx = Arc::new(Context {
        client,
        metrics: Arc::new(Metrics::new().unwrap()),
        recorder: None,
        fetch_timeout: Duration::from_secs(5),
        leader,
    });
    let result = reconcile(Arc::new(source), ctx.clone())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let metrics = ctx.metrics.render();
    drop(ctx);
    (result, verifier.await.unwrap(), metrics)
}

/// The value of the series `name{source="portal"}` in `metrics`.
fn portal_gauge(metrics: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{source=\"portal\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

fn rule_source(portal: &Portal, status: Option<Value>) -> RuleSource {
    let mut v = json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "RuleSource",
        "metadata": {"name": "portal", "uid": "rs-uid-1", "generation": 3},
        "spec": {
            "url": portal.url,
            "format": "portcullis",
            "interval": "5m",
            "authSecretRef": {"namespace": "portcullis", "name": "portal-token", "key": "token"},
            "caBundle": portal.ca_pem,
        },
    });
    if let Some(s) = status {
        v["status"] = s;
    }
    serde_json::from_value(v).unwrap()
}

fn synced_status(revision: &str) -> Value {
    json!({"observedGeneration": 3, "revision": revision, "appliedRules": 2, "conditions": [
        {"type": "Synced", "status": "True", "reason": "Synced", "message": "", "lastTransitionTime": "2026-11-20T10:00:00Z"},
        {"type": "Degraded", "status": "False", "reason": "Synced", "message": "", "lastTransitionTime": "2026-11-20T10:00:00Z"}]})
}

fn token_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "portal-token", "namespace": "portcullis"},
           "data": {"token": "cG9ydGFsLXRva2VuCg=="}})
}

fn policy_list(items: &[(&str, Option<&str>)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(name, source)| {
            let mut meta = json!({"name": name});
            if let Some(s) = source {
                meta["labels"] = json!({"portcullis.dev/rule-source": s});
            }
            json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityArtifactPolicy", "metadata": meta,
                   "spec": {"action": "Audit", "conditions": {"maxAllowedSeverities": {"high": 0}}}})
        })
        .collect();
    json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityArtifactPolicyList", "metadata": {"resourceVersion": "9"}, "items": items})
}

const TWO_RULES: &str = r#"
revision: "2026-11-20.1"
rules:
- name: deny-critical-prod
  action: Deny
  priority: 10
  scope: [{matcherType: Namespace, values: ["prod-*"]}]
  conditions: {maxAllowedSeverities: {critical: 0}}
- name: audit-high
  action: Audit
  conditions: {maxAllowedSeverities: {high: 0}}
"#;

fn applied(name: &str) -> Expect {
    expect(
        "PATCH",
        format!("{SAPS}/{name}{APPLY}"),
        200,
        json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityArtifactPolicy", "metadata": {"name": name}, "spec": {"action": "Audit", "conditions": {"maxAllowedSeverities": {"high": 0}}}}),
    )
}

fn status_ok() -> Expect {
    expect(
        "PATCH",
        STATUS,
        200,
        json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "RuleSource", "metadata": {"name": "portal"}, "spec": {"format": "portcullis", "interval": "5m", "configMapRef": {"namespace": "x", "name": "y"}}}),
    )
}

#[tokio::test]
async fn first_sync_applies_one_policy_per_rule_and_leaves_hand_written_ones() {
    let portal = portal().await;
    portal.serve(200, TWO_RULES, Some("\"v1\""));
    let (result, bodies) = scenario(
        rule_source(&portal, None),
        vec![
            expect("GET", SECRET, 200, token_secret()),
            expect(
                "GET",
                format!("{SAPS}?"),
                200,
                policy_list(&[("team-own-rule", None)]),
            ),
            applied("portal-deny-critical-prod"),
            applied("portal-audit-high"),
            status_ok(),
        ],
    )
    .await;
    result.unwrap();
    let sap = &bodies[2];
    assert_eq!(
        sap["metadata"]["labels"]["portcullis.dev/rule-source"],
        "portal"
    );
    assert_eq!(
        sap["metadata"]["annotations"]["portcullis.dev/rule-source-revision"],
        "2026-11-20.1"
    );
    assert_eq!(sap["metadata"]["ownerReferences"][0]["kind"], "RuleSource");
    assert_eq!(sap["metadata"]["ownerReferences"][0]["uid"], "rs-uid-1");
    assert_eq!(sap["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(sap["spec"]["action"], "Deny");
    assert_eq!(sap["spec"]["priority"], 10);
    assert_eq!(sap["spec"]["scope"][0]["values"][0], "prod-*");
    let status = &bodies[4]["status"];
    assert_eq!(status["revision"], "\"v1\"");
    assert_eq!(status["appliedRules"], 2);
    assert_eq!(status["observedGeneration"], 3);
    assert!(status["lastSyncTime"].is_string());
    assert_eq!(status["conditions"][0]["type"], "Synced");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][1]["type"], "Degraded");
    assert_eq!(status["conditions"][1]["status"], "False");
    // The portal got the token from the Secret.
    assert_eq!(portal.seen.lock().unwrap()[0].0, "Bearer portal-token");
}

#[tokio::test]
async fn an_unchanged_document_makes_no_writes() {
    let portal = portal().await;
    portal.serve(200, TWO_RULES, Some("\"v1\""));
    let (result, _, metrics) = scenario_with_metrics(
        rule_source(&portal, Some(synced_status("\"v1\""))),
        vec![expect("GET", SECRET, 200, token_secret())],
        Leadership::always(),
    )
    .await;
    result.unwrap();
    assert_eq!(
        portal.seen.lock().unwrap()[0].1,
        "\"v1\"",
        "If-None-Match not sent"
    );
    // Unchanged is healthy: the sync time moves (else "not synced for three
    // intervals" would fire for a portal that simply has nothing new).
    let now = jiff::Timestamp::now().as_second() as f64;
    let last = portal_gauge(
        &metrics,
        "portcullis_operator_last_successful_sync_timestamp_seconds",
    )
    .expect("sync time exported");
    assert!((now - last).abs() < 60.0, "{metrics}");
    assert_eq!(
        portal_gauge(&metrics, "portcullis_operator_rules_applied"),
        Some(2.0)
    );
    assert_eq!(
        portal_gauge(&metrics, "portcullis_operator_rule_source_degraded"),
        Some(0.0)
    );
    assert_eq!(
        portal_gauge(&metrics, "portcullis_operator_rule_source_interval_seconds"),
        Some(300.0)
    );
}

#[tokio::test]
async fn a_follower_exports_nothing_about_sources() {
    let portal = portal().await;
    portal.serve(200, TWO_RULES, Some("\"v1\""));
    let (result, bodies, metrics) = scenario_with_metrics(
        rule_source(&portal, Some(synced_status("\"v1\""))),
        Vec::new(),
        Leadership::follower(),
    )
    .await;
    result.unwrap();
    assert!(bodies.is_empty());
    assert!(portal.seen.lock().unwrap().is_empty());
    assert!(!metrics.contains("source=\"portal\""), "{metrics}");
}

#[tokio::test]
async fn a_removed_rule_deletes_exactly_its_policy() {
    let portal = portal().await;
    portal.serve(200, "rules:\n- name: audit-high\n  action: Audit\n  conditions: {maxAllowedSeverities: {high: 0}}\n", Some("\"v2\""));
    let (result, bodies) = scenario(
        rule_source(&portal, Some(synced_status("\"v1\""))),
        vec![
            expect("GET", SECRET, 200, token_secret()),
            expect(
                "GET",
                format!("{SAPS}?"),
                200,
                policy_list(&[
                    ("portal-audit-high", Some("portal")),
                    ("portal-deny-critical-prod", Some("portal")),
                    ("team-own-rule", None),
                    ("other-x", Some("other")),
                ]),
            ),
            applied("portal-audit-high"),
            expect(
                "DELETE",
                format!("{SAPS}/portal-deny-critical-prod?"),
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            status_ok(),
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(bodies[4]["status"]["appliedRules"], 1);
    assert_eq!(bodies[4]["status"]["revision"], "\"v2\"");
}

/// A bad portal answer: no policy written, Degraded with `reason`, Synced kept.
async fn degraded(status: u16, body: &str, reason: &str) {
    let portal = portal().await;
    portal.serve(status, body, Some("\"v9\""));
    let (result, bodies, metrics) = scenario_with_metrics(
        rule_source(&portal, Some(synced_status("\"v1\""))),
        vec![expect("GET", SECRET, 200, token_secret()), status_ok()],
        Leadership::always(),
    )
    .await;
    assert!(result.is_err(), "{body}");
    assert_eq!(
        portal_gauge(&metrics, "portcullis_operator_rule_source_degraded"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        portal_gauge(&metrics, "portcullis_operator_rule_source_interval_seconds"),
        Some(300.0)
    );
    assert_eq!(
        portal_gauge(
            &metrics,
            "portcullis_operator_last_successful_sync_timestamp_seconds"
        ),
        None,
        "a failed sync is not a successful one"
    );
    let conditions = &bodies[1]["status"]["conditions"];
    assert_eq!(conditions[0]["type"], "Degraded");
    assert_eq!(conditions[0]["status"], "True");
    assert_eq!(conditions[0]["reason"], reason, "{conditions}");
    assert_eq!(conditions[1]["type"], "Synced");
    assert_eq!(
        conditions[1]["status"], "True",
        "the last good policies stay in force"
    );
    assert!(
        bodies[1]["status"].get("revision").is_none(),
        "revision must not move"
    );
}

#[tokio::test]
async fn portal_failures_change_nothing_and_set_degraded() {
    degraded(500, "oops", "HTTPError").await;
    degraded(200, "<html>maintenance</html>", "InvalidDocument").await;
    degraded(200, &TWO_RULES[..TWO_RULES.len() / 2], "InvalidDocument").await;
    degraded(
        200,
        "{\"rules\": [{\"name\": \"a\", \"action\": \"Deny\"",
        "InvalidDocument",
    )
    .await;
    // One invalid rule refuses the whole document.
    degraded(200, "rules:\n- {name: ok, action: Audit, conditions: {maxAllowedSeverities: {high: 0}}}\n- {name: bad, action: Deny, conditions: {}}\n", "InvalidDocument").await;
}

#[tokio::test]
async fn a_name_taken_by_a_hand_written_policy_is_not_overwritten() {
    let portal = portal().await;
    portal.serve(200, TWO_RULES, Some("\"v1\""));
    let (result, bodies) = scenario(
        rule_source(&portal, None),
        vec![
            expect("GET", SECRET, 200, token_secret()),
            expect(
                "GET",
                format!("{SAPS}?"),
                200,
                policy_list(&[("portal-audit-high", None)]),
            ),
            status_ok(),
        ],
    )
    .await;
    assert!(
        result
            .unwrap_err()
            .contains("portal-audit-high exists and is not managed")
    );
    assert_eq!(
        bodies[2]["status"]["conditions"][0]["reason"],
        "NameConflict"
    );
}

#[tokio::test]
async fn an_untrusted_portal_certificate_is_refused() {
    let portal = portal().await;
    portal.serve(200, TWO_RULES, None);
    let mut source = rule_source(&portal, None);
    source.spec.ca_bundle = None; // the platform roots do not know the portal's CA
    let (result, bodies) = scenario(
        source,
        vec![expect("GET", SECRET, 200, token_secret()), status_ok()],
    )
    .await;
    assert!(result.is_err());
    assert_eq!(
        bodies[1]["status"]["conditions"][0]["reason"],
        "FetchFailed"
    );
    assert!(portal.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn defender_documents_are_imported() {
    let portal = portal().await;
    let defender = r#"{"apiVersion":"defender.microsoft.com/v1alpha3","kind":"SecurityArtifactPolicy",
      "metadata":{"name":"mdc-vulnerability-assessment-policy"},
      "spec":{"policyLastEditTime":"2025-12-02T21:46:47.000000+00:00",
        "vulnerabilityAssessmentGatedDeployment":[
          {"name":"MDC Lab Example","action":"deny",
           "configuration":{"blockUnscannedImages":true,"exemptions":[],"forbiddenCves":[],"ignoredCves":["CVE-1234-56789"],
             "maxAllowedSeverities":{"high":0},"maximumVaFileAge":"365d","unsupportedRegistries":["mcr.microsoft.com"]},
           "scope":[{"matcherType":"pod","anyOf":["*gate*"]}]}]}}"#;
    portal.serve(200, defender, None);
    let mut source = rule_source(&portal, None);
    source.spec.format = portcullis_crds::RuleFormat::Defender;
    let (result, bodies) = scenario(
        source,
        vec![
            expect("GET", SECRET, 200, token_secret()),
            expect("GET", format!("{SAPS}?"), 200, policy_list(&[])),
            applied("portal-mdc-lab-example"),
            status_ok(),
        ],
    )
    .await;
    result.unwrap();
    let spec = &bodies[2]["spec"];
    assert_eq!(spec["action"], "Deny");
    assert_eq!(spec["ignoredCves"][0]["id"], "CVE-1234-56789");
    assert_eq!(spec["findings"]["blockUnscannedImages"], true);
    assert_eq!(
        bodies[2]["metadata"]["annotations"]["portcullis.dev/rule-source-revision"],
        "2025-12-02T21:46:47.000000+00:00"
    );
    assert!(
        bodies[3]["status"]["revision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[tokio::test]
async fn a_degraded_source_recovers_with_a_full_resync_and_events_record_it() {
    let portal = portal().await;
    portal.serve(200, TWO_RULES, Some("\"v1\""));
    // Last time the portal failed; the revision applied before was v1.
    let mut status = synced_status("\"v1\"");
    status["conditions"][1]["status"] = "True".into();
    status["conditions"][1]["reason"] = "HTTPError".into();
    let (client, verifier) = scripted(vec![
        expect("GET", SECRET, 200, token_secret()),
        expect(
            "GET",
            format!("{SAPS}?"),
            200,
            policy_list(&[
                ("portal-deny-critical-prod", Some("portal")),
                ("portal-audit-high", Some("portal")),
            ]),
        ),
        applied("portal-deny-critical-prod"),
        applied("portal-audit-high"),
        status_ok(),
        expect(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/default/events?",
            201,
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"}, "eventTime": "2026-11-23T10:00:00.000000Z"}),
        ),
    ]);
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics: Arc::new(Metrics::new().unwrap()),
        recorder: Some(kube::runtime::events::Recorder::new(
            client,
            kube::runtime::events::Reporter {
                controller: "portcullis-operator".into(),
                instance: None,
            },
        )),
        fetch_timeout: Duration::from_secs(5),
        leader: Leadership::always(),
    });
    reconcile(Arc::new(rule_source(&portal, Some(status))), ctx.clone())
        .await
        .unwrap();
    let metrics = ctx.metrics.render();
    drop(ctx);
    let bodies = verifier.await.unwrap();
    // No If-None-Match while degraded: the whole document is applied again.
    assert_eq!(portal.seen.lock().unwrap()[0].1, "");
    let conditions = &bodies[4]["status"]["conditions"];
    assert_eq!(
        (
            conditions[0]["type"].as_str(),
            conditions[0]["status"].as_str()
        ),
        (Some("Synced"), Some("True"))
    );
    assert_eq!(
        (
            conditions[1]["type"].as_str(),
            conditions[1]["status"].as_str()
        ),
        (Some("Degraded"), Some("False"))
    );
    let event = &bodies[5];
    assert_eq!(event["reason"], "Synced");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["kind"], "RuleSource");
    assert_eq!(event["regarding"]["name"], "portal");
    assert_eq!(event["note"], "2 rules applied from revision 2026-11-20.1");
    assert!(
        metrics.contains("portcullis_operator_rules_applied{source=\"portal\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "portcullis_operator_last_successful_sync_timestamp_seconds{source=\"portal\"}"
        )
    );
    assert!(metrics.contains("portcullis_operator_reconciles_total{controller=\"rulesource\"} 1"));
}
