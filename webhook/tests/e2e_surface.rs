//! The admission surface of the real binary: what it answers before its
//! rules are loaded, to reviews of the wrong type, without a client
//! certificate when one is required; how it reads policy files; and what it
//! gates (image volumes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{NO_WAIT, Proc, Registry, Webhook, bin, free_port, kubectl, review_for};

const DENY_CRITICAL: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: deny-critical}
spec:
  action: Deny
  conditions: {maxAllowedSeverities: {critical: 0}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_of_the_wrong_type_get_400() {
    let w = Webhook::start(DENY_CRITICAL, None, &[]);
    let pod = kubectl(&["deployment", "x", "--image=nginx"], "shop");
    let mut review = review_for("CREATE", &pod, None);
    for (field, value) in [
        ("apiVersion", json!("admission.k8s.io/v2")),
        ("apiVersion", json!("v1")),
        ("kind", json!("Pod")),
    ] {
        let original = review[field].clone();
        review[field] = value.clone();
        let (status, body) = w.post(serde_json::to_vec(&review).unwrap()).await;
        assert_eq!(status, 400, "{field}={value}: {body}");
        assert!(body.contains("expected an admission.k8s.io/v1"), "{body}");
        review[field] = original;
    }
    let (status, _) = w.post(b"{\"apiVersion\":".to_vec()).await;
    assert_eq!(status, 400);
    let (status, _) = w.post(serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, 200);
}

/// In a cluster, until both reflectors have listed, there are no rules: an
/// answer then would be `allowed: true` for everything. 503 lets the API
/// server's failurePolicy decide instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_before_the_policies_are_loaded() {
    // An API server that accepts connections and never answers.
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = api.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://{api_addr}'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let _proc = Proc(
        Command::new(bin("portcullis-webhook"))
            .env("KUBECONFIG", &kubeconfig)
            .args([
                format!("--listen=127.0.0.1:{port}"),
                format!("--metrics-listen=127.0.0.1:{metrics_port}"),
                format!("--tls-cert={}", dir.path().join("tls.crt").display()),
                format!("--tls-key={}", dir.path().join("tls.key").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    support::install_crypto();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let pod = kubectl(&["deployment", "x", "--image=nginx"], "shop");
    let body = serde_json::to_vec(&review_for("CREATE", &pod, None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(r) = client
            .post(format!("https://localhost:{port}/validate"))
            .body(body.clone())
            .send()
            .await
        {
            break r.status().as_u16();
        }
        assert!(Instant::now() < deadline, "the webhook never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503);
    let health = |path: &'static str| {
        let url = format!("http://127.0.0.1:{metrics_port}{path}");
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(health("/healthz").await, 200);
    assert_eq!(health("/readyz").await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_with_client_ca() {
    support::install_crypto();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["kube-apiserver".into()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let w = Webhook::start(
        DENY_CRITICAL,
        None,
        &[&format!("--client-ca={}", ca_file.display()), NO_WAIT],
    );
    let pod = kubectl(&["deployment", "x", "--image=nginx"], "shop");
    let body = serde_json::to_vec(&review_for("CREATE", &pod, None)).unwrap();
    let url = format!("https://localhost:{}/validate", w.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.health("/readyz").await != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No client certificate: the handshake is refused.
    let anonymous = w.client.post(&url).body(body.clone()).send().await;
    assert!(anonymous.is_err(), "answered without a client certificate");
    // A certificate from another CA: refused too.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::CertificateParams::new(vec!["intruder".into()])
        .unwrap()
        .self_signed(&other_key)
        .unwrap();
    let with = |cert: &str, key: &str| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(w.cert_pem.as_bytes()).unwrap())
            .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let intruder = with(&other.pem(), &other_key.serialize_pem());
    assert!(intruder.post(&url).body(body.clone()).send().await.is_err());
    let apiserver = with(&client_cert.pem(), &client_key.serialize_pem());
    let r = apiserver.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_files_are_read_strictly_at_start_and_on_reload() {
    // At start: the process refuses to run on a typo, naming where it is.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        DENY_CRITICAL.replace("critical: 0", "critcal: 0"),
    )
    .unwrap();
    let out = Command::new(bin("portcullis-webhook"))
        .args([
            format!("--policy-dir={}", dir.path().display()),
            format!("--listen=127.0.0.1:{}", free_port()),
            format!("--metrics-listen=127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules.yaml (document 1): SecurityArtifactPolicy deny-critical: spec.conditions.maxAllowedSeverities.critcal: unknown field"),
        "{stderr}"
    );

    // On reload: the rules in force stay, and the failure shows.
    let w = Webhook::start(DENY_CRITICAL, None, &["--policy-reload-interval=200ms"]);
    let metrics = w.metrics().await;
    assert!(
        metrics.contains("portcullis_policy_last_reload_success 1"),
        "{metrics}"
    );
    let broken = format!("{DENY_CRITICAL}---\n{DENY_CRITICAL}");
    std::fs::write(w.dir.path().join("policies/rules.yaml"), broken).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = w.metrics().await;
        if metrics.contains("portcullis_policy_reload_failures_total 1") {
            assert!(metrics.contains("portcullis_policy_last_reload_success 0"));
            assert!(metrics.contains("portcullis_policies_loaded 1"));
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        w.log()
            .contains("SecurityArtifactPolicy deny-critical is defined twice"),
        "{}",
        w.log()
    );
}

/// Image volumes (`spec.volumes[].image.reference`) are pulled by the
/// kubelet like containers: gated like them, seen by `Container` matchers
/// and named in messages as `volume:<name>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_are_gated() {
    let dist = Registry::distribution(None);
    dist.push_image("models/llm:1", &[], None);
    let rules = r#"
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: scanned-volumes}
spec:
  action: Deny
  scope: [{matcherType: Container, values: ['volume:*']}]
  findings: {blockUnscannedImages: true}
"#;
    let w = Webhook::start(
        rules,
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={}", dist.addr),
        ],
    );
    let mut pod: Value = kubectl(&["deployment", "x", "--image=nginx"], "shop");
    pod["spec"]["template"]["spec"]["volumes"] = json!([
        {"name": "models", "image": {"reference": format!("{}/models/llm:1", dist.addr)}}
    ]);
    let r = w.review("CREATE", &pod, None).await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "{}/models/llm:1 (volume:models): No vulnerability findings",
            dist.addr
        )),
        "{message}"
    );
    // The container itself (nginx) is out of the rule's scope.
    assert!(!message.contains("nginx"), "{message}");
}

/// A policy file being rewritten in place (truncated, then filled) must never
/// load as "no rules": before, a reload that caught the empty file admitted
/// everything until the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_caught_mid_write_never_loads_as_no_rules() {
    let w = Webhook::start(DENY_CRITICAL, None, &["--policy-reload-interval=50ms"]);
    let rules = w.dir.path().join("policies/rules.yaml");
    // Images the rule covers but no registry could serve: denied by the rule
    // set's InvalidReference verdict, admitted when there are no rules.
    let pod = kubectl(
        &["deployment", "x", "--image=Registry.Example.com/UPPER:1"],
        "shop",
    );
    let writer = {
        let rules = rules.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                std::fs::write(&rules, "").unwrap();
                tokio::time::sleep(Duration::from_millis(15)).await;
                std::fs::write(&rules, DENY_CRITICAL).unwrap();
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    while !writer.is_finished() {
        let r = w.review("CREATE", &pod, None).await;
        assert_eq!(
            r["allowed"], false,
            "admitted while the file was being rewritten: {r}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.await.unwrap();
}
