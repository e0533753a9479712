//! Logging: JSON lines (or pretty text) on standard output, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=warn";

/// The log filter: `RUST_LOG` if set (a value that is not a valid filter is
/// an error naming it, as for every other setting), else [`DEFAULT_FILTER`].
pub fn filter(rust_log: Option<&str>) -> anyhow::Result<EnvFilter> {
    match rust_log {
        None => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Some(text) => EnvFilter::builder()
            .parse(text)
            .map_err(|err| anyhow::anyhow!("RUST_LOG ({text:?}) is not a valid log filter: {err}")),
    }
}

/// Installs the global subscriber; a second call does nothing.
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    Ok(())
}
