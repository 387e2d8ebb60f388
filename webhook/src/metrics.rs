//! Prometheus metrics, all named `portcullis_*`, plus the standard process
//! metrics.
//!
//! Every label value comes from a bounded set, because requests are written
//! by whoever creates Pods: `kind` is a gated kind or `other`, `operation` one
//! of four, `registry` a configured pattern or well-known registry (decided
//! by the caller, see `gate.rs`), `rule` a policy name (written by admins).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::admission::GATED_KINDS;

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
    invalid_policies: IntGauge,
    reload_failures: IntCounter,
    reload_success: IntGauge,
    events_dropped: IntCounter,
    shed: IntCounterVec,
    connections: IntGauge,
    connections_refused: IntCounter,
    verifications: IntCounterVec,
    identity_exchanges: IntCounterVec,
    access_usable: IntGaugeVec,
    /// Admission series by (kind, operation, decision) and latency by kind,
    /// resolved on first use: a label lookup per request was a measurable
    /// part of a warm admission.
    resolved: Arc<Resolved>,
}

/// Label values of the admission series, as indexes.
const OPERATIONS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "other"];
const DECISIONS: [&str; 3] = ["Allow", "Audit", "Deny"];
const KINDS: usize = GATED_KINDS.len() + 1;

struct Resolved {
    requests: [OnceLock<IntCounter>; KINDS * OPERATIONS.len() * DECISIONS.len()],
    latency: [OnceLock<Histogram>; KINDS],
}

/// One series of a counter family, resolved on first use (so it appears
/// in `/metrics` once counted, as with `with_label_values`) and then
/// incremented without a label lookup.
#[derive(Clone)]
pub struct Counter {
    family: IntCounterVec,
    labels: [&'static str; 2],
    series: Arc<OnceLock<IntCounter>>,
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.series
            .get_or_init(|| self.family.with_label_values(&self.labels))
            .inc();
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A gated kind as a label, or `other`.
fn kind_label(kind: &str) -> &str {
    GATED_KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("other")
}

fn kind_index(kind: &str) -> usize {
    GATED_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(GATED_KINDS.len())
}

fn operation_label(operation: &str) -> &str {
    match operation {
        "CREATE" | "UPDATE" | "DELETE" | "CONNECT" => operation,
        _ => "other",
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
        };
        let m = Metrics {
            admission_requests: counter_vec(
                "portcullis_admission_requests_total",
                "Admission requests answered",
                &["kind", "operation", "decision"],
            )?,
            admission_latency: histogram_vec(
                "portcullis_admission_duration_seconds",
                "Time to answer an admission request",
                &["kind"],
            )?,
            decisions: counter_vec(
                "portcullis_decisions_total",
                "Per-image decisions that audited or denied, by rule and reason",
                &["action", "rule", "reason"],
            )?,
            registry_requests: counter_vec(
                "portcullis_registry_requests_total",
                "HTTP requests to registries",
                &["registry", "operation", "status"],
            )?,
            registry_latency: histogram_vec(
                "portcullis_registry_request_duration_seconds",
                "Registry request latency",
                &["registry", "operation"],
            )?,
            cache: counter_vec(
                "portcullis_cache_lookups_total",
                "Cache lookups by cache and result",
                &["cache", "result"],
            )?,
            policies: IntGauge::new(
                "portcullis_policies_loaded",
                "SecurityArtifactPolicy rules in force",
            )?,
            invalid_policies: IntGauge::new(
                "portcullis_policies_invalid",
                "SecurityArtifactPolicies that do not compile (acting per --invalid-rule)",
            )?,
            reload_failures: IntCounter::new(
                "portcullis_policy_reload_failures_total",
                "Policy file changes that did not load (the rules in force were kept)",
            )?,
            reload_success: IntGauge::new(
                "portcullis_policy_last_reload_success",
                "1 when the last policy load succeeded, 0 when it failed",
            )?,
            events_dropped: IntCounter::new(
                "portcullis_events_dropped_total",
                "Gating Events not published because the publishing queue was full",
            )?,
            shed: counter_vec(
                "portcullis_load_shed_total",
                "Requests refused with 503 by a concurrency bound, by reason",
                &["reason"],
            )?,
            connections: IntGauge::new(
                "portcullis_connections_open",
                "Open HTTPS connections to the admission endpoint",
            )?,
            connections_refused: IntCounter::new(
                "portcullis_connections_refused_total",
                "Connections closed at once because --max-connections were open",
            )?,
            verifications: counter_vec(
                "portcullis_artifact_verifications_total",
                "Signed artifacts checked against a trusted producer, by result (verified or the rejection kind)",
                &["result"],
            )?,
            identity_exchanges: counter_vec(
                "portcullis_registry_identity_exchanges_total",
                "Federated identity token exchanges (Azure, AWS, GCP), by RegistryAccess and result (success or error)",
                &["registry_access", "result"],
            )?,
            access_usable: IntGaugeVec::new(
                Opts::new(
                    "portcullis_registry_access_usable",
                    "1 once a federated RegistryAccess has given credentials (its first successful token exchange), 0 while it has only failed",
                ),
                &["registry_access"],
            )?,
            resolved: Arc::new(Resolved {
                requests: std::array::from_fn(|_| OnceLock::new()),
                latency: std::array::from_fn(|_| OnceLock::new()),
            }),
            registry,
        };
        m.reload_success.set(1);
        for c in [
            Box::new(m.admission_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.admission_latency.clone()),
            Box::new(m.decisions.clone()),
            Box::new(m.registry_requests.clone()),
            Box::new(m.registry_latency.clone()),
            Box::new(m.cache.clone()),
            Box::new(m.policies.clone()),
            Box::new(m.invalid_policies.clone()),
            Box::new(m.reload_failures.clone()),
            Box::new(m.reload_success.clone()),
            Box::new(m.events_dropped.clone()),
            Box::new(m.shed.clone()),
            Box::new(m.connections.clone()),
            Box::new(m.connections_refused.clone()),
            Box::new(m.verifications.clone()),
            Box::new(m.identity_exchanges.clone()),
            Box::new(m.access_usable.clone()),
        ] {
            m.registry.register(c)?;
        }
        portcullis_runtime::metrics::register_standard(
            &m.registry,
            "portcullis",
            env!("CARGO_PKG_VERSION"),
        )?;
        Ok(m)
    }

    /// One answered admission request (`kind` and `operation` are bounded here).
    pub fn admission(&self, kind: &str, operation: &str, decision: &str, took: Duration) {
        let k = kind_index(kind);
        let operation = operation_label(operation);
        let o = OPERATIONS
            .iter()
            .position(|x| *x == operation)
            .unwrap_or(OPERATIONS.len() - 1);
        match DECISIONS.iter().position(|d| *d == decision) {
            Some(d) => self.resolved.requests[(k * OPERATIONS.len() + o) * DECISIONS.len() + d]
                .get_or_init(|| {
                    self.admission_requests.with_label_values(&[
                        kind_label(kind),
                        operation,
                        decision,
                    ])
                })
                .inc(),
            None => self
                .admission_requests
                .with_label_values(&[kind_label(kind), operation, decision])
                .inc(),
        }
        self.resolved.latency[k]
            .get_or_init(|| {
                self.admission_latency
                    .with_label_values(&[kind_label(kind)])
            })
            .observe(took.as_secs_f64());
    }

    /// One image audited or denied.
    pub fn decision(&self, action: &str, rule: &str, reason: &str) {
        self.decisions
            .with_label_values(&[action, rule, reason])
            .inc();
    }

    /// One registry request; `registry` is an already-bounded label.
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

    /// The series of one cache and result, to count without a label lookup.
    pub fn cache_counter(&self, cache: &'static str, result: &'static str) -> Counter {
        Counter {
            family: self.cache.clone(),
            labels: [cache, result],
            series: Arc::default(),
        }
    }

    /// Rules in force.
    pub fn set_policies(&self, n: usize) {
        self.policies.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Policies that do not compile.
    pub fn set_invalid_policies(&self, n: usize) {
        self.invalid_policies
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A policy (re)load finished.
    pub fn policy_reload(&self, ok: bool) {
        if !ok {
            self.reload_failures.inc();
        }
        self.reload_success.set(i64::from(ok));
    }

    /// A gating Event was dropped.
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// A request was refused by a concurrency bound.
    pub fn shed(&self, reason: &'static str) {
        self.shed.with_label_values(&[reason]).inc();
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        self.connections.add(delta);
    }

    /// A connection was refused at the connection bound.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// One artifact verification against one producer.
    pub fn verification(&self, result: &'static str) {
        self.verifications.with_label_values(&[result]).inc();
    }

    /// One federated token exchange for a RegistryAccess (names are written
    /// by admins, so the label is bounded).
    pub fn identity_exchange(&self, registry_access: &str, ok: bool) {
        self.identity_exchanges
            .with_label_values(&[registry_access, if ok { "success" } else { "error" }])
            .inc();
    }

    /// Whether a federated RegistryAccess gave credentials: the first
    /// success sets `portcullis_registry_access_usable` to 1 for good;
    /// failures before it show 0, so "Ready but never usable" can be
    /// alerted on.
    pub fn access_usable(&self, registry_access: &str, ok: bool) {
        let usable = self.access_usable.with_label_values(&[registry_access]);
        if ok {
            usable.set(1);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        portcullis_runtime::metrics::render(&self.registry)
    }
}

/// Connection counts of the admission endpoint.
impl portcullis_runtime::http::ConnectionEvents for Metrics {
    fn opened(&self) {
        self.connection(1);
    }
    fn closed(&self) {
        self.connection(-1);
    }
    fn refused(&self) {
        self.connection_refused();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_chosen_labels_are_bounded() {
        let m = Metrics::new().unwrap();
        for i in 0..5000 {
            m.admission(
                &format!("Kind{i}"),
                &format!("OP{i}"),
                "Allow",
                Duration::from_millis(1),
            );
        }
        m.admission("Pod", "CREATE", "Deny", Duration::from_millis(1));
        let text = m.render();
        assert!(text.len() < 64 * 1024, "{} bytes", text.len());
        assert!(text.contains(r#"portcullis_admission_requests_total{decision="Allow",kind="other",operation="other"} 5000"#));
        assert!(text.contains(r#"kind="Pod""#));
        assert!(text.contains("portcullis_build_info"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
