//! Prometheus metrics, all named `portcullis_*` (issue 3 §6).

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The webhook's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    admission_requests: IntCounterVec,
    admission_latency: HistogramVec,
    decisions: IntCounterVec,
    registry_requests: IntCounterVec,
    registry_latency: HistogramVec,
    cache: IntCounterVec,
    policies: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let admission_requests = IntCounterVec::new(
            Opts::new(
                "portcullis_admission_requests_total",
                "Admission requests answered",
            ),
            &["kind", "operation", "decision"],
        )?;
        let admission_latency = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_admission_duration_seconds",
                "Time to answer an admission request",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["kind"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "portcullis_decisions_total",
                "Per-image decisions that audited or denied, by rule and reason",
            ),
            &["action", "rule", "reason"],
        )?;
        let registry_requests = IntCounterVec::new(
            Opts::new(
                "portcullis_registry_requests_total",
                "HTTP requests to registries",
            ),
            &["registry", "operation", "status"],
        )?;
        let registry_latency = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_registry_request_duration_seconds",
                "Registry request latency",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["registry", "operation"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "portcullis_cache_lookups_total",
                "Cache lookups by cache and result",
            ),
            &["cache", "result"],
        )?;
        let policies = IntGauge::new(
            "portcullis_policies_loaded",
            "SecurityArtifactPolicy rules in force",
        )?;
        registry.register(Box::new(admission_requests.clone()))?;
        registry.register(Box::new(admission_latency.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(registry_requests.clone()))?;
        registry.register(Box::new(registry_latency.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(policies.clone()))?;
        Ok(Metrics {
            registry,
            admission_requests,
            admission_latency,
            decisions,
            registry_requests,
            registry_latency,
            cache,
            policies,
        })
    }

    /// One answered admission request.
    pub fn admission(&self, kind: &str, operation: &str, decision: &str, took: Duration) {
        self.admission_requests
            .with_label_values(&[kind, operation, decision])
            .inc();
        self.admission_latency
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }

    /// One image audited or denied.
    pub fn decision(&self, action: &str, rule: &str, reason: &str) {
        self.decisions
            .with_label_values(&[action, rule, reason])
            .inc();
    }

    /// One registry request.
    pub fn registry_request(&self, registry: &str, operation: &str, status: &str, took: Duration) {
        self.registry_requests
            .with_label_values(&[registry, operation, status])
            .inc();
        self.registry_latency
            .with_label_values(&[registry, operation])
            .observe(took.as_secs_f64());
    }

    /// One cache lookup (`hit`, `stale` or `miss`).
    pub fn cache(&self, cache: &str, result: &str) {
        self.cache.with_label_values(&[cache, result]).inc();
    }

    /// Rules in force.
    pub fn set_policies(&self, n: usize) {
        self.policies.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
