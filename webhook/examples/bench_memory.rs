//! Memory benchmark: resident set size with 10,000 cached images × 500
//! findings each, held as the webhook's cache holds them (`Arc<ScanSummary>`
//! built from normalised findings). CVE IDs are drawn from a pool of 60,000
//! distinct IDs, as a cluster's images share many vulnerabilities.
//!
//!     cargo run --release -p portcullis-webhook --example bench_memory

use std::sync::Arc;

use portcullis_webhook::engine::{GateFinding, ScanSummary};
use portcullis_webhook::severity::Severity;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    const IMAGES: usize = 10_000;
    const FINDINGS: usize = 500;
    const POOL: usize = 60_000;
    let before = rss_kib();
    // The IDs as the parser produces them: one Arc<str> per distinct ID per
    // report would be the worst case; the pool is shared like an interner.
    let pool: Vec<Arc<str>> = (0..POOL)
        .map(|i| Arc::from(format!("CVE-{}-{:05}", 2015 + i % 11, i)))
        .collect();
    let levels = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Negligible,
        Severity::Unknown,
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut cache: Vec<Arc<ScanSummary>> = Vec::with_capacity(IMAGES);
    for _ in 0..IMAGES {
        let findings = (0..FINDINGS).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = usize::try_from(seed % POOL as u64).unwrap_or(0);
            GateFinding {
                id: pool[i].clone(),
                severity: levels[i % levels.len()],
                fixable: i % 3 != 0,
            }
        });
        cache.push(Arc::new(ScanSummary::new(findings, None)));
    }
    let after = rss_kib();
    let total: usize = cache.iter().map(|s| s.len()).sum();
    println!(
        "images={IMAGES} findings/image={FINDINGS} findings={total} rss_before={:.1}MiB rss_after={:.1}MiB delta={:.1}MiB bytes/finding={:.1}",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / total as f64
    );
}
