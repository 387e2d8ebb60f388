//! Operator metrics, named `portcullis_operator_*`.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The operator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    rules_applied: IntGaugeVec,
    last_sync: GaugeVec,
    cert_expiry: prometheus::IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "portcullis_operator_reconciles_total",
                "Reconciles per controller",
            ),
            &["controller"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "portcullis_operator_reconcile_failures_total",
                "Failed reconciles per controller and error kind",
            ),
            &["controller", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_operator_reconcile_duration_seconds",
                "Reconcile duration",
            )
            .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )?;
        let rules_applied = IntGaugeVec::new(
            Opts::new(
                "portcullis_operator_rules_applied",
                "Policies applied per rule source",
            ),
            &["source"],
        )?;
        let last_sync = GaugeVec::new(
            Opts::new(
                "portcullis_operator_last_successful_sync_timestamp_seconds",
                "Unix time of the last successful sync per rule source",
            ),
            &["source"],
        )?;
        let cert_expiry = prometheus::IntGauge::new(
            "portcullis_operator_certificate_expiry_seconds",
            "Seconds until the webhook's serving certificate expires",
        )?;
        registry.register(Box::new(cert_expiry.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rules_applied.clone()))?;
        registry.register(Box::new(last_sync.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            failures,
            duration,
            rules_applied,
            last_sync,
            cert_expiry,
        })
    }

    /// One reconcile and how long it took.
    pub fn reconciled(&self, controller: &str, took: Duration) {
        self.reconciles.with_label_values(&[controller]).inc();
        self.duration
            .with_label_values(&[controller])
            .observe(took.as_secs_f64());
    }

    /// One failed reconcile.
    pub fn failed(&self, controller: &str, error: &str) {
        self.failures.with_label_values(&[controller, error]).inc();
    }

    /// A successful sync of `source` with `rules` policies.
    pub fn synced(&self, source: &str, rules: usize) {
        self.rules_applied
            .with_label_values(&[source])
            .set(i64::try_from(rules).unwrap_or(i64::MAX));
        self.last_sync
            .with_label_values(&[source])
            .set(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
    }

    /// Seconds until the serving certificate expires.
    pub fn certificate_expiry(&self, seconds: i64) {
        self.cert_expiry.set(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
