//! Registries that hang, fail, throttle or lie, behind a fault-injecting proxy
//! in front of a real distribution registry: every admission is answered
//! before the deadline with the failure class's reason code. Also the
//! destination guard, credential scoping, request coalescing and certificate
//! reload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Fault, FaultProxy, POLICIES, Registry, Webhook, fixture, kubectl};

const RECENT: &str = "2026-11-20T10:00:00Z";

fn warnings(resp: &Value) -> String {
    resp["warnings"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_answered_before_the_deadline_with_their_reason() {
    let dist = Registry::distribution(None);
    let report = fixture("trivy-json/trivy-debian-buster.json.golden");
    let cases: &[(&str, &str, Fault, &str)] = &[
        ("hang", "/manifests/1.0", Fault::Hang, "RegistryUnavailable"),
        (
            "e500",
            "/manifests/1.0",
            Fault::Status(500),
            "RegistryUnavailable",
        ),
        (
            "garbage",
            "/manifests/1.0",
            Fault::Garbage,
            "RegistryUnavailable",
        ),
        (
            "oversized",
            "/blobs/",
            Fault::Oversize(40 * 1024 * 1024),
            "MalformedFindings",
        ),
        ("mismatch", "/blobs/", Fault::Corrupt, "MalformedFindings"),
        (
            "artifact",
            "/manifests/sha256:",
            Fault::Garbage,
            "MalformedFindings",
        ),
        (
            "tokendown",
            "/",
            Fault::BearerRealm("http://127.0.0.1:9/token".into()),
            "RegistryUnavailable",
        ),
        (
            "missing",
            "/manifests/1.0",
            Fault::Status(404),
            "ImageNotFound",
        ),
        (
            "denied",
            "/manifests/1.0",
            Fault::Status(403),
            "RegistryAuth",
        ),
        // Last: a 429 backs off the whole registry until Retry-After.
        (
            "throttled",
            "/manifests/1.0",
            Fault::Throttle(30),
            "RegistryThrottled",
        ),
    ];
    for (name, _, _, _) in cases {
        dist.push_image(&format!("faults/{name}:1.0"), &[], None);
        dist.attach(&format!("faults/{name}:1.0"), &report, RECENT, None);
    }
    let proxy = FaultProxy::start(&dist.addr).await;
    for (name, marker, fault, _) in cases {
        // Faults on artifact manifests hit only the referrer's digest, not
        // the referrers tag (`sha256-...`) or the image tag.
        proxy.inject(&format!("/faults/{name}{marker}"), fault.clone());
    }
    let p = &proxy.addr;
    let deadline = Duration::from_millis(1500);
    let wh = Webhook::start(
        POLICIES,
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={p},127.0.0.1:9"),
            "--deadline=1500ms",
            "--registry-timeout=1s",
        ],
    );
    for (name, _, _, reason) in cases {
        let dep = kubectl(
            &[
                "deployment",
                name,
                &format!("--image={p}/faults/{name}:1.0"),
            ],
            "shop",
        );
        let started = Instant::now();
        let r = wh.review("CREATE", &dep, None).await;
        let took = started.elapsed();
        assert!(
            took < deadline + Duration::from_millis(300),
            "{name}: answered after {took:?}"
        );
        // Failure classes default to Audit: admitted with a warning naming the reason.
        assert_eq!(r["allowed"], true, "{name}: {r}");
        assert!(
            warnings(&r).contains(&format!("(reason {reason})")),
            "{name}: expected {reason}: {r}"
        );
    }
    // Honouring Retry-After: the throttled registry is not asked again at once.
    let before = proxy.count("/faults/throttled/");
    let dep = kubectl(
        &[
            "deployment",
            "t2",
            &format!("--image={p}/faults/throttled:1.0"),
        ],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert!(warnings(&r).contains("(reason RegistryThrottled)"), "{r}");
    assert_eq!(
        proxy.count("/faults/throttled/"),
        before,
        "a throttled registry was asked again before Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_actions_are_configurable() {
    let dist = Registry::distribution(None);
    dist.push_image("faults/e500:1.0", &[], None);
    let proxy = FaultProxy::start(&dist.addr).await;
    proxy.inject("/faults/e500/", Fault::Status(503));
    let p = &proxy.addr;
    let wh = Webhook::start(
        POLICIES,
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={p}"),
            "--on-registry-unavailable=deny",
        ],
    );
    let dep = kubectl(
        &["deployment", "x", &format!("--image={p}/faults/e500:1.0")],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{p}/faults/e500:1.0: The registry is unavailable: http://{p}/v2/faults/e500/manifests/1.0: answered HTTP 503")),
        "{message}"
    );
    assert!(
        message.ends_with("(reason RegistryUnavailable)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_named_by_images_are_guarded() {
    let dist = Registry::distribution(None);
    dist.push_image("shop/web:1.0", &[], None);
    let port = dist.addr.rsplit(':').next().unwrap();
    let wh = Webhook::start(
        POLICIES,
        None,
        &[&format!(
            "--insecure-registry={},localhost:{port}",
            dist.addr
        )],
    );
    for image in [
        format!("{}/shop/web:1.0", dist.addr),
        format!("localhost:{port}/shop/web:1.0"),
        // Case and numeric forms the URL parser reads as loopback and the
        // metadata address (they passed as public names before).
        format!("LOCALHOST:{port}/shop/web:1.0"),
        format!("127.1:{port}/shop/web:1.0"),
        format!("127.0.1:{port}/shop/web:1.0"),
        format!("0x7f.0.0.1:{port}/shop/web:1.0"),
        format!("2130706433:{port}/shop/web:1.0"),
        "169.254.43518/latest/meta-data:1".to_owned(),
        "169.254.169.254/latest/meta-data:1".to_owned(),
        "10.0.0.1:5000/internal/app:1".to_owned(),
        "[64:ff9b::a9fe:a9fe]/app:1".to_owned(),
        "registry.kube-system.svc.cluster.local:5000/app:1".to_owned(),
    ] {
        let dep = kubectl(&["deployment", "x", &format!("--image={image}")], "shop");
        let r = wh.review("CREATE", &dep, None).await;
        assert_eq!(r["allowed"], false, "{image}: {r}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(
            message.ends_with("(reason BlockedDestination)"),
            "{image}: {message}"
        );
    }
    // Nothing reached the registry.
    let metrics = wh.metrics().await;
    assert!(
        !metrics.contains("portcullis_registry_requests_total{"),
        "{metrics}"
    );
}

/// A registry that redirects a blob into the metadata address: the refused
/// redirect is the guard's (BlockedDestination, denied by default), not
/// registry trouble (audited) as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_into_a_refused_address_is_blocked_destination() {
    let dist = Registry::distribution(None);
    let report = fixture("trivy-json/trivy-debian-buster.json.golden");
    dist.push_image("shop/redirected:1.0", &[], None);
    dist.attach("shop/redirected:1.0", &report, RECENT, None);
    let proxy = FaultProxy::start(&dist.addr).await;
    proxy.inject(
        "/shop/redirected/blobs/",
        Fault::Redirect("http://169.254.169.254/latest/meta-data/iam".into()),
    );
    let p = &proxy.addr;
    let wh = Webhook::start(
        POLICIES,
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={p}"),
        ],
    );
    let dep = kubectl(
        &[
            "deployment",
            "r",
            &format!("--image={p}/shop/redirected:1.0"),
        ],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("redirect refused: 169.254.169.254 is a link-local address")
            && message.ends_with("(reason BlockedDestination)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_only_to_their_registry() {
    let private = Registry::distribution(Some(("alice", "s3cret")));
    let creds = Some(("alice", "s3cret"));
    private.push_image("team/app:1.0", &[], creds);
    private.attach(
        "team/app:1.0",
        &fixture("trivy-json/trivy-debian-buster.json.golden"),
        RECENT,
        creds,
    );
    let public = Registry::distribution(None);
    public.push_image("oss/tool:1.0", &[], None);
    public.attach(
        "oss/tool:1.0",
        &fixture("trivy-json/trivy-sl-micro-rancher5.4-novulns.json.golden"),
        RECENT,
        None,
    );
    // Both behind recording proxies; the "public" one also sends its token
    // realm to another host, which must not receive the private credentials.
    let private_proxy = FaultProxy::start(&private.addr).await;
    let public_proxy = FaultProxy::start(&public.addr).await;
    let realm = FaultProxy::start(&public.addr).await;
    let foreign = FaultProxy::start(&public.addr).await;
    foreign.inject(
        "/v2/",
        Fault::BearerRealm(format!("http://{}/token", realm.addr)),
    );
    let (pp, pub_, fr) = (&private_proxy.addr, &public_proxy.addr, &foreign.addr);
    let registry_config = format!(
        r#"
apiVersion: portcullis.dev/v1alpha1
kind: RegistryAccess
metadata: {{name: private}}
spec:
  registries: ["{pp}", "{fr}"]
  auth: {{type: BasicSecret, secretRef: {{namespace: portcullis, name: private-registry}}}}
---
apiVersion: v1
kind: Secret
metadata: {{namespace: portcullis, name: private-registry}}
type: kubernetes.io/basic-auth
stringData: {{username: alice, password: s3cret}}
"#
    );
    let wh = Webhook::start(
        POLICIES,
        Some(&registry_config),
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={pp},{pub_},{fr},{}", realm.addr),
        ],
    );
    // The private registry: credentials used, findings read, critical denied.
    let dep = kubectl(
        &["deployment", "app", &format!("--image={pp}/team/app:1.0")],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("(rule deny-critical)"),
        "{r}"
    );
    assert!(
        private_proxy
            .authorizations
            .lock()
            .unwrap()
            .iter()
            .all(|a| a.starts_with("Basic "))
    );
    assert!(!private_proxy.authorizations.lock().unwrap().is_empty());
    // The public registry: read anonymously, no credentials sent.
    let dep = kubectl(
        &[
            "deployment",
            "tool",
            &format!("--image={pub_}/oss/tool:1.0"),
        ],
        "shop",
    );
    let r = wh.review("CREATE", &dep, None).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(public_proxy.authorizations.lock().unwrap().is_empty());
    // A registry whose token realm is another host: the realm gets no basic credentials.
    let dep = kubectl(
        &["deployment", "f", &format!("--image={fr}/oss/tool:1.0")],
        "shop",
    );
    let _ = wh.review("CREATE", &dep, None).await;
    assert!(realm.count("/token") >= 1, "the realm was not asked");
    assert!(
        realm.authorizations.lock().unwrap().is_empty(),
        "credentials leaked to a foreign realm: {:?}",
        realm.authorizations.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admissions_of_one_image_share_one_request_per_url() {
    let dist = Registry::distribution(None);
    dist.push_image("shop/hot:1.0", &[], None);
    dist.attach(
        "shop/hot:1.0",
        &fixture("grype-json/grype-chainguard-ruby-test.json"),
        RECENT,
        None,
    );
    let proxy = FaultProxy::start(&dist.addr).await;
    let p = &proxy.addr;
    let wh = std::sync::Arc::new(Webhook::start(
        POLICIES,
        None,
        &[
            "--allow-destination=127.0.0.1/32",
            &format!("--insecure-registry={p}"),
        ],
    ));
    let dep = kubectl(
        &["deployment", "hot", &format!("--image={p}/shop/hot:1.0")],
        "shop",
    );
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (wh, dep) = (wh.clone(), dep.clone());
            tokio::spawn(async move { wh.review("CREATE", &dep, None).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(warnings(&r).contains("(rule audit-high)"), "{r}");
    }
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(seen.len() >= 4, "{seen:?}");
    for (url, n) in &seen {
        assert_eq!(*n, 1, "{url} requested {n} times: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_restart() {
    let wh = Webhook::start(POLICIES, None, &["--tls-reload-interval=100ms"]);
    // Keep a connection open across the rotation.
    let r = wh
        .review(
            "CREATE",
            &kubectl(&["deployment", "x", "--image=nginx"], "none"),
            None,
        )
        .await;
    assert!(r["allowed"].is_boolean());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = wh.dir.path();
    std::fs::write(dir.join("tls.key.new"), cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("tls.crt.new"), cert.cert.pem()).unwrap();
    std::fs::rename(dir.join("tls.key.new"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ok = client
            .post(format!("https://localhost:{}/validate", wh.port))
            .body("{}")
            .send()
            .await
            .is_ok();
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the rotation still works.
    let r = wh
        .review(
            "CREATE",
            &kubectl(&["deployment", "y", "--image=nginx"], "none"),
            None,
        )
        .await;
    assert!(r["allowed"].is_boolean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_auth_on_a_real_registry() {
    support::install_crypto();
    let tokens = support::TokenServer::start("alice", "s3cret").await;
    let registry = Registry::distribution_with_token_auth(&tokens);
    let r = &registry.addr;
    // skopeo pushes with the same credentials through the same token server.
    registry.push_image("team/app:1.0", &[], Some(("alice", "s3cret")));
    registry.attach(
        "team/app:1.0",
        &fixture("trivy-json/trivy-debian-buster.json.golden"),
        RECENT,
        Some(("alice", "s3cret")),
    );
    let secret = |user: &str, pass: &str| {
        format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: RegistryAccess\nmetadata: {{name: team}}\nspec:\n  registries: [\"{r}\"]\n  auth: {{type: BasicSecret, secretRef: {{namespace: portcullis, name: team}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{namespace: portcullis, name: team}}\nstringData: {{username: {user}, password: {pass}}}\n"
        )
    };
    let args = [
        "--allow-destination=127.0.0.1/32".to_owned(),
        format!("--insecure-registry={r},{}", tokens.addr),
        "--trusted-token-realm".to_owned(),
        tokens.addr.clone(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dep = kubectl(
        &["deployment", "app", &format!("--image={r}/team/app:1.0")],
        "shop",
    );

    let wh = Webhook::start(POLICIES, Some(&secret("alice", "s3cret")), &args);
    let resp = wh.review("CREATE", &dep, None).await;
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(rule deny-critical)"),
        "{resp}"
    );

    let wh = Webhook::start(POLICIES, Some(&secret("alice", "wrong")), &args);
    let resp = wh.review("CREATE", &dep, None).await;
    assert!(warnings(&resp).contains("(reason RegistryAuth)"), "{resp}");

    // Without --trusted-token-realm the realm (another port: another origin)
    // gets no credentials, and the registry refuses the anonymous token.
    let anonymous_asks = || {
        let seen = tokens.authorizations.lock().unwrap();
        seen.iter().filter(|a| a.is_empty()).count()
    };
    let before = anonymous_asks();
    let wh = Webhook::start(POLICIES, Some(&secret("alice", "s3cret")), &args[..2]);
    let resp = wh.review("CREATE", &dep, None).await;
    assert!(warnings(&resp).contains("(reason RegistryAuth)"), "{resp}");
    assert!(
        anonymous_asks() > before,
        "the token server was not asked anonymously"
    );
}
