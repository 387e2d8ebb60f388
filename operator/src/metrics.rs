//! Operator metrics, named `portcullis_operator_*`.

use std::time::Duration;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
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
    interval: GaugeVec,
    degraded: IntGaugeVec,
    /// No labels; a vector so that it is exported only once set (followers
    /// and `--certificates=cert-manager` export nothing rather than 0).
    cert_expiry: IntGaugeVec,
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
        let interval = GaugeVec::new(
            Opts::new(
                "portcullis_operator_rule_source_interval_seconds",
                "Sync interval of each rule source (spec.interval), as the leader reads it",
            ),
            &["source"],
        )?;
        let degraded = IntGaugeVec::new(
            Opts::new(
                "portcullis_operator_rule_source_degraded",
                "1 while the last sync of a rule source failed (condition Degraded), else 0",
            ),
            &["source"],
        )?;
        let cert_expiry = IntGaugeVec::new(
            Opts::new(
                "portcullis_operator_certificate_expiry_seconds",
                "Seconds until the webhook's serving certificate expires (leader, --certificates=operator)",
            ),
            &[],
        )?;
        registry.register(Box::new(cert_expiry.clone()))?;
        registry.register(Box::new(interval.clone()))?;
        registry.register(Box::new(degraded.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rules_applied.clone()))?;
        registry.register(Box::new(last_sync.clone()))?;
        portcullis_runtime::metrics::register_standard(
            &registry,
            "portcullis_operator",
            env!("CARGO_PKG_VERSION"),
        )?;
        Ok(Metrics {
            registry,
            reconciles,
            failures,
            duration,
            rules_applied,
            last_sync,
            interval,
            degraded,
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

    /// The state of `source` after a sync attempt: its interval and whether
    /// it is Degraded. Alerts compare the last successful sync with three
    /// intervals.
    pub fn source_state(&self, source: &str, interval: Duration, degraded: bool) {
        self.interval
            .with_label_values(&[source])
            .set(interval.as_secs_f64());
        self.degraded
            .with_label_values(&[source])
            .set(i64::from(degraded));
    }

    /// Drops every series of `source`: it was deleted, or this replica no
    /// longer leads (a follower must not export a stale sync time that would
    /// look like a stuck source).
    pub fn forget_source(&self, source: &str) {
        let _ = self.rules_applied.remove_label_values(&[source]);
        let _ = self.last_sync.remove_label_values(&[source]);
        let _ = self.interval.remove_label_values(&[source]);
        let _ = self.degraded.remove_label_values(&[source]);
    }

    /// Seconds until the serving certificate expires.
    pub fn certificate_expiry(&self, seconds: i64) {
        self.cert_expiry.with_label_values::<&str>(&[]).set(seconds);
    }

    /// No certificate expiry known here (a follower).
    pub fn forget_certificate_expiry(&self) {
        let _ = self.cert_expiry.remove_label_values::<&str>(&[]);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        portcullis_runtime::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_series_come_and_go_together() {
        let m = Metrics::new().unwrap();
        m.synced("a", 2);
        m.source_state("a", Duration::from_secs(300), false);
        m.source_state("b", Duration::from_secs(60), true);
        let text = m.render();
        assert!(
            text.contains("portcullis_operator_rule_source_interval_seconds{source=\"a\"} 300")
        );
        assert!(text.contains("portcullis_operator_rule_source_degraded{source=\"a\"} 0"));
        assert!(text.contains("portcullis_operator_rule_source_degraded{source=\"b\"} 1"));
        m.forget_source("a");
        let text = m.render();
        assert!(!text.contains("source=\"a\""), "{text}");
        assert!(text.contains("portcullis_operator_rule_source_degraded{source=\"b\"} 1"));
    }

    #[test]
    fn certificate_expiry_is_absent_until_known() {
        let m = Metrics::new().unwrap();
        assert!(
            !m.render()
                .contains("portcullis_operator_certificate_expiry_seconds ")
        );
        m.certificate_expiry(86_400);
        assert!(
            m.render()
                .contains("portcullis_operator_certificate_expiry_seconds 86400")
        );
        m.forget_certificate_expiry();
        assert!(
            !m.render()
                .contains("portcullis_operator_certificate_expiry_seconds ")
        );
    }
}
