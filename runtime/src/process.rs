//! A binary's life: the TLS crypto provider (ring, the only one in the
//! tree), the async runtime, the run, a prompt stop, the exit code.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// Runs `run` to completion on a multi-threaded runtime. Work still running
/// afterwards (background lookups, watches) is abandoned after half a
/// second: shutdown is prompt whatever remote peers do.
pub fn run<F, E>(name: &str, run: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("{name}: a TLS crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run);
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} stopped");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
