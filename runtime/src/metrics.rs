//! What every binary's metrics registry holds besides its own series.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// Registers `<prefix>_build_info{version} 1` and the process collector.
pub fn register_standard(
    registry: &Registry,
    prefix: &str,
    version: &str,
) -> Result<(), prometheus::Error> {
    let build = IntGaugeVec::new(
        Opts::new(
            format!("{prefix}_build_info"),
            "Build information (always 1), by version",
        ),
        &["version"],
    )?;
    build.with_label_values(&[version]).set(1);
    registry.register(Box::new(build))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(())
}

/// The text exposition format of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    if TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
