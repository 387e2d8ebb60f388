//! Hostile load against the real binary, loopback only and bounded in time.
//! With `failurePolicy: Ignore` a review the webhook cannot answer is an
//! admission, so each probe asserts functional bounds, not speed: the
//! process stays under the container memory limit (VmHWM), `/healthz` and
//! `/validate` keep answering, every answer comes within `--deadline` + 1 s,
//! and `/metrics` stays small. No timing targets: those are benchmarks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Webhook, review_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One probe at a time: each loads both cores on its own, and the bounds
/// asserted (answers within the deadline + 1 s) are about the webhook under
/// one attack, not about several attacks' load generators sharing the CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The memory limit of the shipped manifests (deploy/webhook.yaml).
const CONTAINER_LIMIT_KIB: u64 = 256 * 1024;

const AUDIT_ALL: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: SecurityArtifactPolicy
metadata: {name: audit-high}
spec:
  action: Audit
  conditions: {maxAllowedSeverities: {high: 0}}
"#;

fn pod(name: &str, images: &[String]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "tenant"},
        "spec": {"containers": containers}
    })
}

/// Sends a review and returns (status, parsed body, time taken).
async fn timed_review(w: &Webhook, review: &Value) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = w.post(serde_json::to_vec(review).unwrap()).await;
    let took = started.elapsed();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::Null),
        took,
    )
}

async fn assert_serving(w: &Webhook, deadline: Duration) {
    assert_eq!(
        w.health("/healthz").await,
        200,
        "/healthz stopped answering"
    );
    let review = review_for("CREATE", &pod("probe", &["nginx:1.27".into()]), None);
    let (status, body, took) = timed_review(w, &review).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        took < deadline + Duration::from_secs(1),
        "answered in {took:?}"
    );
}

fn assert_memory(w: &Webhook) {
    let hwm = w.status("VmHWM");
    eprintln!("VmHWM {hwm} kB");
    assert!(
        hwm < CONTAINER_LIMIT_KIB,
        "VmHWM {hwm} kB is over the {CONTAINER_LIMIT_KIB} kB container limit"
    );
}

/// Slowloris (heads dribbled a byte at a time) and slow uploads (a large
/// Content-Length, then nothing): before, both were held forever and 80
/// stalled uploads cost 310 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_slow_uploads_are_cut_off() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Rules that apply nowhere: only the server is under test.
    let w = Webhook::start(
        "",
        None,
        &[
            "--max-connections=64",
            "--header-timeout=2s",
            "--body-timeout=2s",
            "--idle-timeout=4s",
        ],
    );
    let connector = w.tls_connector();
    let closed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..150 {
        let connector = connector.clone();
        let closed = closed.clone();
        let port = w.port;
        tasks.push(tokio::spawn(async move {
            let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
                closed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let Ok(mut tls) = connector.connect(name, tcp).await else {
                // Over --max-connections: closed at once.
                closed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let slow_upload = i % 2 == 0;
            let head = if slow_upload {
                "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n{".to_owned()
            } else {
                "POST /validate HTTP/1.1\r\nHost: localhost\r\n".to_owned()
            };
            let _ = tls.write_all(head.as_bytes()).await;
            // Dribble a byte every 700 ms until the server hangs up.
            let mut buf = [0u8; 512];
            for _ in 0..40 {
                tokio::select! {
                    r = tls.read(&mut buf) => {
                        if matches!(r, Ok(0) | Err(_)) {
                            closed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    () = tokio::time::sleep(Duration::from_millis(700)) => {
                        if tls.write_all(if slow_upload { b" " } else { b"X" }).await.is_err() {
                            closed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }));
    }
    // While they hold on, probes and reviews keep answering (the health port
    // has its own pool; reviews get a slot as soon as a stalled one is cut).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.health("/healthz").await, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_serving(&w, Duration::from_secs(3)).await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    assert_eq!(
        closed.load(Ordering::Relaxed),
        150,
        "some slow clients were still held after the header and body timeouts"
    );
    assert_memory(&w);
    let metrics = w.metrics().await;
    assert!(
        metrics.contains("portcullis_connections_refused_total"),
        "{metrics}"
    );
}

/// A thousand idle connections: before, 1,011 exhausted the file
/// descriptors and both endpoints stopped answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_starve_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let w = Webhook::start("", None, &["--idle-timeout=3s"]);
    let connector = w.tls_connector();
    let mut held = Vec::new();
    let mut tls_held = Vec::new();
    for i in 0..1000 {
        let Ok(tcp) = TcpStream::connect(("127.0.0.1", w.port)).await else {
            continue;
        };
        if i % 4 == 0 {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            if let Ok(tls) = connector.connect(name, tcp).await {
                tls_held.push(tls);
            }
        } else {
            held.push(tcp);
        }
    }
    assert_serving(&w, Duration::from_secs(3)).await;
    assert_eq!(w.health("/readyz").await, 200);
    // Idle TLS connections are closed after the idle timeout, plain TCP ones
    // that never finish a handshake after the handshake timeout.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut still_open = 0;
    for mut tls in tls_held {
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(100), tls.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {}
            _ => still_open += 1,
        }
    }
    assert_eq!(
        still_open, 0,
        "idle TLS connections were kept past the idle timeout"
    );
    drop(held);
    assert_serving(&w, Duration::from_secs(3)).await;
    assert_memory(&w);
}

/// A DNS server that reads queries and never answers (UDP and TCP).
async fn silent_dns() -> std::net::SocketAddr {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let _ = udp.recv_from(&mut buf).await;
        }
    });
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = tcp.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A 5,000-image Pod whose hosts never resolve: before, 512 blocking DNS
/// threads and up to 80 s to stop. Resolution is now asynchronous and
/// bounded; the answer comes by the deadline, and SIGTERM is prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_hosts_answer_by_the_deadline_and_shutdown_is_prompt() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dns = silent_dns().await;
    let images: Vec<String> = (0..5000)
        .map(|i| format!("h{i}.never-resolves.example/app:1"))
        .collect();
    let review = review_for("CREATE", &pod("wide", &images), None);

    // Default bounds: far more images than judged per request.
    let w = Webhook::start(AUDIT_ALL, None, &[&format!("--dns-server={dns}")]);
    let (status, body, took) = timed_review(&w, &review).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("(reason LimitExceeded)"), "{message}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    drop(w);

    // Bounds raised to let every lookup start: they still end by the deadline.
    let mut w = Webhook::start(
        AUDIT_ALL,
        None,
        &[
            &format!("--dns-server={dns}"),
            "--max-images-per-review=10000",
            "--max-containers-per-review=10000",
            "--deadline=2s",
        ],
    );
    let (status, body, took) = timed_review(&w, &review).await;
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    assert_eq!(
        body["response"]["allowed"], true,
        "RegistryUnavailable is audited by default"
    );
    let warnings = body["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("RegistryUnavailable")),
        "{warnings:?}"
    );
    assert_serving(&w, Duration::from_secs(2)).await;
    let threads = w.status("Threads");
    assert!(
        threads < 64,
        "{threads} threads: lookups must not hold a thread each"
    );
    assert_memory(&w);
    let stopped = w.terminate();
    assert!(stopped < Duration::from_secs(5), "SIGTERM took {stopped:?}");
}

/// A registry serving an index of `platforms` platforms for `app:1`, every
/// other request answered 404 after `delay`; counts requests and the most
/// in flight at once.
struct ScriptedRegistry {
    addr: String,
    requests: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

async fn scripted_registry(platforms: usize, delay: Duration) -> ScriptedRegistry {
    use sha2::Digest;
    let manifests: Vec<Value> = (0..platforms)
        .map(|i| {
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{:064x}", i + 1),
                "size": 500,
                "platform": {"os": "linux", "architecture": format!("arch{i}")}
            })
        })
        .collect();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests
    }))
    .unwrap();
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(&index));
    let index = Arc::new(index);
    let requests = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (r, f, m) = (requests.clone(), in_flight.clone(), max_in_flight.clone());
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (index, digest, r, f, m) = (
            index.clone(),
            digest.clone(),
            r.clone(),
            f.clone(),
            m.clone(),
        );
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            let resp = if path.ends_with("/manifests/1") || path.ends_with(&digest) {
                axum::response::Response::builder()
                    .header("content-type", "application/vnd.oci.image.index.v1+json")
                    .header("docker-content-digest", digest.as_str())
                    .body(axum::body::Body::from(index.to_vec()))
                    .unwrap()
            } else {
                tokio::time::sleep(delay).await;
                axum::response::Response::builder()
                    .status(404)
                    .body(axum::body::Body::empty())
                    .unwrap()
            };
            f.fetch_sub(1, Ordering::SeqCst);
            resp
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    ScriptedRegistry {
        addr,
        requests,
        max_in_flight,
    }
}

/// An index with 10,000 platforms: before, ~10,000 registry connections at
/// once and 350 MB. Now LimitExceeded (denied by default) after one request;
/// with the cap lifted, the per-registry bound holds the fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_platform_index_is_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    // distribution refuses an index whose manifests are missing, so a
    // scripted registry serves it.
    let registry = scripted_registry(10_000, Duration::from_millis(50)).await;
    let image = format!("{}/app:1", registry.addr);
    let flags = [
        format!("--insecure-registry={}", registry.addr),
        "--allow-destination=127.0.0.0/8".to_owned(),
    ];
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let w = Webhook::start(AUDIT_ALL, None, &args);
    let review = review_for(
        "CREATE",
        &pod("multiarch", std::slice::from_ref(&image)),
        None,
    );
    let (status, body, took) = timed_review(&w, &review).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("10000 platforms") && message.contains("LimitExceeded"),
        "{message}"
    );
    assert!(took < Duration::from_secs(4));
    assert_eq!(
        registry.requests.load(Ordering::SeqCst),
        1,
        "only the index was fetched"
    );
    // Known now: answered without asking again.
    let (_, body, _) = timed_review(&w, &review).await;
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(registry.requests.load(Ordering::SeqCst), 1);
    drop(w);

    let mut lifted = args.clone();
    lifted.extend(["--max-platforms-per-index=20000", "--deadline=2s"]);
    let w = Webhook::start(AUDIT_ALL, None, &lifted);
    let (status, body, took) = timed_review(&w, &review).await;
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    let peak = registry.max_in_flight.load(Ordering::SeqCst);
    assert!(
        peak <= 32,
        "{peak} requests in flight to one registry (bound: 32)"
    );
    assert_serving(&w, Duration::from_secs(2)).await;
    assert_memory(&w);
}

/// 5,000 distinct `kind` values: before, each became a metric label and
/// /metrics grew to 24.7 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distinct_kind_flood_keeps_metrics_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let w = Arc::new(Webhook::start(AUDIT_ALL, None, &[]));
    let mut batch = Vec::new();
    for i in 0..5000 {
        let w = w.clone();
        batch.push(tokio::spawn(async move {
            let mut object = pod("p", &["nginx".into()]);
            object["kind"] = format!("Kind{i}").into();
            let review = review_for("CREATE", &object, None);
            let (status, _) = w.post(serde_json::to_vec(&review).unwrap()).await;
            assert_eq!(status, 200);
        }));
        if batch.len() == 50 {
            for t in batch.drain(..) {
                t.await.unwrap();
            }
        }
    }
    for t in batch {
        t.await.unwrap();
    }
    let metrics = w.metrics().await;
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
    assert!(metrics.contains(r#"kind="other""#));
    assert_memory(&w);
}

/// 60 reviews with 3.9 MB image names: before, the parse cache kept them
/// (308 MB, never freed) and each log line carried the whole name (a 351 MB
/// log after 90 requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_image_names_are_refused_without_being_kept() {
    let _one = ONE_AT_A_TIME.lock().await;
    let w = Webhook::start(AUDIT_ALL, None, &[]);
    for i in 0..60 {
        let name = format!("registry.example.com/{}{i}:1", "a".repeat(3_900_000));
        let review = review_for("CREATE", &pod("big", &[name]), None);
        let (status, body, took) = timed_review(&w, &review).await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(4));
        assert_eq!(body["response"]["allowed"], false);
        let message = body["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("InvalidReference"),
            "{}",
            &message[..200.min(message.len())]
        );
        assert!(message.len() < 4096, "{} bytes of message", message.len());
    }
    assert_memory(&w);
    let rss = w.status("VmRSS");
    assert!(
        rss < 128 * 1024,
        "{rss} kB resident after the requests: names were kept"
    );
    let log = w.log();
    assert!(log.len() < 1 << 20, "the log grew to {} bytes", log.len());
    assert_serving(&w, Duration::from_secs(3)).await;
}
