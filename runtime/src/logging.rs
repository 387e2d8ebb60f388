//! Logging: JSON lines (or text for people), filtered by `--log`.

use std::io::IsTerminal;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Text,
}

/// The logging flags of every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter (tracing EnvFilter syntax, e.g. `info,portcullis=debug`).
    #[arg(long, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log: String,
    /// Log format.
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

/// Colour codes only for a person at a terminal (and never with NO_COLOR
/// set): log collectors and files get plain text.
pub fn use_ansi(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber, writing to stderr.
pub fn init(args: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_ansi(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_at_a_terminal_without_no_color() {
        assert!(use_ansi(true, None));
        assert!(!use_ansi(false, None));
        assert!(!use_ansi(true, Some("1".into())));
        assert!(use_ansi(true, Some("".into())));
    }
}
