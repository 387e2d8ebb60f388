//! Warm-path benchmark: admissions/s and latency of the webhook binary for a
//! 3-container Pod against 50 rules with cached findings, next to a bare
//! rustls server (same TLS stack, same request) answering a fixed allow — the
//! transport floor. Load: wrk, 32 keep-alive HTTPS connections. Run on an
//! otherwise idle machine:
//!
//!     cargo build --release -p portcullis-webhook --bins --example bench_warm
//!     target/release/examples/bench_warm
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::{Registry, Webhook, fixture, free_port, kubectl, review_for};

const CONNECTIONS: &str = "32";
const DURATION: &str = "15s";

fn policies() -> String {
    let mut out = String::new();
    for i in 0..50 {
        let (action, conditions) = if i % 2 == 0 {
            (
                "Deny",
                format!("{{maxAllowedSeverities: {{critical: {}}}}}", 5 + i),
            )
        } else {
            (
                "Audit",
                format!(
                    "{{maxAllowedSeverities: {{high: {}}}, forbiddenCves: [CVE-1999-{i:04}]}}",
                    40 + i
                ),
            )
        };
        out.push_str(&format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: SecurityArtifactPolicy\nmetadata: {{name: rule-{i:02}}}\nspec:\n  action: {action}\n  priority: {i}\n  scope: [{{matcherType: Namespace, values: ['*']}}]\n  ignoredCves: [{{id: CVE-2000-{i:04}}}]\n  conditions: {conditions}\n"
        ));
    }
    out
}

fn wrk(url: &str, lua: &std::path::Path) -> (f64, String, String) {
    let out = Command::new("wrk")
        .args(["-t2", "-c", CONNECTIONS, "-d", DURATION, "--latency", "-s"])
        .arg(lua)
        .arg(url)
        .output()
        .expect("wrk (apt install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let pct = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_default()
    };
    let non2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .map(str::to_owned);
    assert!(non2xx.is_none(), "errors under load: {text}");
    (rps, pct("50%"), pct("99%"))
}

#[tokio::main]
async fn main() {
    let registry = Registry::distribution(None);
    let r = &registry.addr;
    let report = fixture("grype-json/defectdojo-grype-issue_9618-ubi8.json");
    for name in ["front", "sidecar", "init"] {
        registry.push_image(&format!("bench/{name}:1.0"), &[], None);
        registry.attach(
            &format!("bench/{name}:1.0"),
            &report,
            "2026-11-20T10:00:00Z",
            None,
        );
    }
    let webhook = Webhook::start(
        &policies(),
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={r}"),
            "--log=warn",
        ],
    );

    // A 3-container Pod (two containers and an init container).
    let dep = kubectl(
        &[
            "deployment",
            "bench",
            &format!("--image={r}/bench/front:1.0"),
        ],
        "shop",
    );
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench-1", "namespace": "shop", "labels": {"app": "bench"}}, "spec": dep["spec"]["template"]["spec"].clone()});
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": format!("{r}/bench/sidecar:1.0")}));
    pod["spec"]["initContainers"] =
        json!([{"name": "init", "image": format!("{r}/bench/init:1.0")}]);
    let review = review_for("CREATE", &pod, None);
    let first = webhook.review("CREATE", &pod, None).await;
    println!(
        "warm-up answer: allowed={} warnings={}",
        first["allowed"],
        first["warnings"].as_array().map_or(0, Vec::len)
    );

    let dir = tempfile::tempdir().unwrap();
    let body = serde_json::to_string(&review).unwrap();
    let lua = dir.path().join("post.lua");
    std::fs::write(&lua, format!("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n", serde_json::to_string(&body).unwrap())).unwrap();

    // The floor: same TLS stack (axum-server + rustls/ring), fixed allow.
    let uid = review["request"]["uid"].clone();
    let fixed: Value = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": uid, "allowed": true}});
    let fixed = serde_json::to_vec(&fixed).unwrap();
    let floor_port = free_port();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(
        webhook.dir.path().join("tls.crt"),
        webhook.dir.path().join("tls.key"),
    )
    .await
    .unwrap();
    let app = axum::Router::new().route(
        "/validate",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let fixed = fixed.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    fixed,
                )
            }
        }),
    );
    tokio::spawn(
        axum_server::bind_rustls(
            std::net::SocketAddr::from(([127, 0, 0, 1], floor_port)),
            tls,
        )
        .serve(app.into_make_service()),
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let (floor_rps, floor_p50, floor_p99) = tokio::task::spawn_blocking({
        let lua = lua.clone();
        move || wrk(&format!("https://localhost:{floor_port}/validate"), &lua)
    })
    .await
    .unwrap();
    let port = webhook.port;
    let (rps, p50, p99) = tokio::task::spawn_blocking(move || {
        wrk(&format!("https://localhost:{port}/validate"), &lua)
    })
    .await
    .unwrap();
    println!(
        "connections={CONNECTIONS} duration={DURATION} body_bytes={}",
        body.len()
    );
    println!(
        "floor   (bare rustls, fixed allow): {floor_rps:>9.0} req/s  p50 {floor_p50:>8}  p99 {floor_p99:>8}"
    );
    println!("webhook (3 containers, 50 rules):   {rps:>9.0} req/s  p50 {p50:>8}  p99 {p99:>8}");
    println!("ratio: {:.2}x the floor", rps / floor_rps);
}
