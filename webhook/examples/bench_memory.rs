//! Memory benchmark of the real process: a local registry (distribution
//! 2.8) holds N distinct images, each with its own generated Grype report of
//! F findings (IDs from a pool of 60,000, packages from 5,000, so images
//! share vulnerabilities as a cluster's do); the `portcullis-webhook` binary
//! fills its caches through real admissions of 10-container Pods, and its
//! VmRSS/VmHWM are read from /proc at rest and after every 1,000 images. A
//! second pass over every Pod then counts what the caches still hold
//! (`portcullis_cache_lookups_total`): an entry evicted is a miss.
//!
//!     cargo build --release -p portcullis-webhook --bins --examples
//!     target/release/examples/bench_memory                          # 10k x 500, --cache-max-bytes 1Gi
//!     target/release/examples/bench_memory --cache-max-bytes default # the default budget (128Mi)
//!     target/release/examples/bench_memory --images 2000 --findings 500 --pool 60000
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "../tests/support/mod.rs"]
mod support;

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "bench_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use common::{Rng, Seeder, grype_report, status_kib};
use futures::StreamExt;
use serde_json::json;
use support::{POLICIES, Registry, Webhook};

const PER_POD: usize = 10;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `portcullis_cache_lookups_total{cache,result}` from /metrics.
fn cache_counts(metrics: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("portcullis_cache_lookups_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap();
        let mut cache = String::new();
        let mut result = String::new();
        for kv in labels.split(',') {
            let (k, v) = kv.split_once('=').unwrap();
            let v = v.trim_matches('"').to_owned();
            match k {
                "cache" => cache = v,
                "result" => result = v,
                _ => {}
            }
        }
        out.insert((cache, result), value.trim().parse().unwrap_or(0));
    }
    out
}

#[tokio::main]
async fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = BTreeMap::new();
    for pair in raw.chunks(2) {
        args.insert(
            pair[0].trim_start_matches("--").to_owned(),
            pair.get(1).cloned().unwrap_or_default(),
        );
    }
    let images: usize = args.get("images").map_or(10_000, |s| s.parse().unwrap());
    let findings: usize = args.get("findings").map_or(500, |s| s.parse().unwrap());
    let pool: usize = args.get("pool").map_or(60_000, |s| s.parse().unwrap());
    let budget = args
        .get("cache-max-bytes")
        .cloned()
        .unwrap_or_else(|| "1Gi".into());
    let concurrency: usize = args.get("concurrency").map_or(4, |s| s.parse().unwrap());
    assert!(images.is_multiple_of(PER_POD));

    let registry = Registry::distribution(None);
    let r = registry.addr.clone();
    let seeder = Seeder::new(&r, true);
    let started = Instant::now();
    futures::stream::iter(0..images)
        .map(|i| {
            let seeder = seeder.clone();
            async move {
                let mut rng =
                    Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0x1000_0000_01B3));
                let report = grype_report(&mut rng, findings, pool, 5_000);
                let repo = format!("mem/img{i:05}");
                let pushed = seeder.image(&repo, "1.0", &format!("mem-{i}")).await;
                seeder
                    .attach(
                        &repo,
                        &pushed,
                        &report,
                        common::FINDINGS_TYPE,
                        "application/json",
                        "2026-11-20T10:00:00Z",
                    )
                    .await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    println!(
        "seeded {images} images x {findings} findings (ID pool {pool}) in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut flags = vec![
        "--allow-destination=127.0.0.1/32".to_owned(),
        format!("--insecure-registry={r}"),
        "--log=warn".to_owned(),
        // Nothing expires or refreshes while the caches fill and are read.
        "--cache-fresh=1h".to_owned(),
        "--cache-max-stale=1h".to_owned(),
        "--deadline=20s".to_owned(),
        "--registry-timeout=10s".to_owned(),
    ];
    if budget != "default" {
        flags.push(format!("--cache-max-bytes={budget}"));
    }
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let webhook = Arc::new(Webhook::start(POLICIES, None, &flag_refs));
    let pid = webhook.pid();
    println!("webhook flags: {}", flags.join(" "));
    println!(
        "at rest (policies loaded, caches empty): VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        mib(status_kib(pid, "VmRSS")),
        mib(status_kib(pid, "VmHWM"))
    );

    let pod = |n: usize| {
        let containers: Vec<_> = (0..PER_POD)
            .map(|k| {
                let i = n * PER_POD + k;
                json!({"name": format!("c{k}"), "image": format!("{r}/mem/img{i:05}:1.0")})
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": format!("mem-{n}"), "namespace": "shop"},
               "spec": {"containers": containers}})
    };
    let admit = |range: std::ops::Range<usize>| {
        let webhook = webhook.clone();
        let pods: Vec<_> = range.map(pod).collect();
        async move {
            futures::stream::iter(pods)
                .map(|p| {
                    let webhook = webhook.clone();
                    async move {
                        let r = webhook.review("CREATE", &p, None).await;
                        // POLICIES deny Critical findings: every generated report has some.
                        assert!(r["allowed"] == false || r["warnings"].is_array(), "{r}");
                        assert!(!r.to_string().contains("(reason "), "lookup failed: {r}");
                    }
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<()>>()
                .await;
        }
    };
    let pods = images / PER_POD;
    let step = (1_000 / PER_POD).min(pods);
    let started = Instant::now();
    println!(
        "{:>7} {:>10} {:>10} {:>16}",
        "images", "VmRSS MiB", "VmHWM MiB", "bytes/finding"
    );
    let rest = status_kib(pid, "VmRSS");
    let mut done = 0;
    while done < pods {
        let next = (done + step).min(pods);
        admit(done..next).await;
        done = next;
        let n = done * PER_POD;
        let rss = status_kib(pid, "VmRSS");
        println!(
            "{:>7} {:>10.1} {:>10.1} {:>16.1}",
            n,
            mib(rss),
            mib(status_kib(pid, "VmHWM")),
            (rss.saturating_sub(rest) * 1024) as f64 / (n * findings) as f64
        );
    }
    println!("filled in {:.0} s", started.elapsed().as_secs_f64());
    let rss = status_kib(pid, "VmRSS");
    let hwm = status_kib(pid, "VmHWM");
    println!(
        "full: {images} images x {findings} findings: VmRSS {:.1} MiB ({:.1} MB), VmHWM {:.1} MiB; {:.1} bytes per finding, everything included",
        mib(rss),
        rss as f64 * 1024.0 / 1e6,
        mib(hwm),
        (rss * 1024) as f64 / (images * findings) as f64
    );

    // Second pass: what do the caches still hold?
    let before = cache_counts(&webhook.metrics().await);
    admit(0..pods).await;
    let after = cache_counts(&webhook.metrics().await);
    let mut line = String::from("second pass over every Pod, cache lookups:");
    for ((cache, result), n) in &after {
        let d = n - before
            .get(&(cache.clone(), result.clone()))
            .copied()
            .unwrap_or(0);
        if d > 0 {
            line.push_str(&format!(" {cache}/{result}={d}"));
        }
    }
    println!("{line}");
    println!(
        "after the second pass: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        mib(status_kib(pid, "VmRSS")),
        mib(status_kib(pid, "VmHWM"))
    );
}
