//! Cold-path benchmark: a Pod with 1, 5 and 10 distinct uncached images (by
//! tag) behind a proxy adding 20 ms to every registry round trip. Reports the
//! admission latency and the round trips the proxy saw per image.
//!
//!     cargo build --release -p portcullis-webhook --bins --example bench_cold
//!     target/release/examples/bench_cold
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Fault, FaultProxy, POLICIES, Registry, Webhook, fixture};

const RTT: Duration = Duration::from_millis(20);

#[tokio::main]
async fn main() {
    let registry = Registry::distribution(None);
    let ferro = Registry::ferro();
    let report = fixture("grype-json/defectdojo-grype-issue_9618-ubi8.json");
    for (reg, label) in [
        (&registry, "distribution (referrers tag fallback)"),
        (&ferro, "ferro-oci-server (referrers API)"),
    ] {
        for round in 0..3 {
            for i in 0..10 {
                let (digest, _) = reg.push_image(&format!("cold{round}/img{i}:1.0"), &[], None);
                if reg.addr == ferro.addr {
                    reg.oras_attach(
                        &format!("cold{round}/img{i}@{digest}"),
                        &report,
                        "2026-11-20T10:00:00Z",
                    );
                } else {
                    reg.attach(
                        &format!("cold{round}/img{i}:1.0"),
                        &report,
                        "2026-11-20T10:00:00Z",
                        None,
                    );
                }
            }
        }
        let proxy = FaultProxy::start(&reg.addr).await;
        proxy.inject("/v2/", Fault::Delay(RTT));
        let p = proxy.addr.clone();
        let webhook = Webhook::start(
            POLICIES,
            None,
            &[
                "--allow-destination=127.0.0.1/32",
                &format!("--insecure-registry={p}"),
                "--log=warn",
            ],
        );
        println!("{label}, {} ms added per round trip", RTT.as_millis());
        for (round, n) in [1usize, 5, 10].into_iter().enumerate() {
            let containers: Vec<_> = (0..n).map(|i| json!({"name": format!("c{i}"), "image": format!("{p}/cold{round}/img{i}:1.0")})).collect();
            let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("cold-{n}"), "namespace": "shop"}, "spec": {"containers": containers}});
            let before: usize = proxy.seen.lock().unwrap().values().sum();
            let started = Instant::now();
            let r = webhook.review("CREATE", &pod, None).await;
            let took = started.elapsed();
            let requests: usize = proxy.seen.lock().unwrap().values().sum::<usize>() - before;
            assert!(
                r["warnings"].to_string().contains("audit-high") || r["allowed"] == false,
                "{r}"
            );
            println!(
                "  {n:>2} images: {:>6.1} ms  ({:.1} round trips of latency; {} registry requests, {:.1} per image)",
                took.as_secs_f64() * 1000.0,
                took.as_secs_f64() / RTT.as_secs_f64(),
                requests,
                requests as f64 / n as f64
            );
        }
    }
}
