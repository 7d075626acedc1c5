//! Logging: tracing to stderr, filtered by `RUST_LOG` (default `info`).
//!
//! tungstenite logs every frame's payload at `trace` level (`Received message ...`), which
//! would put sealed shares and partial sums in the log. Its targets are therefore capped at
//! `debug` whatever `RUST_LOG` says.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

/// Targets whose `trace` events carry message payloads.
pub const PAYLOAD_LOGGING_TARGETS: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// Whether an event of this target and level may be logged.
pub fn allowed(target: &str, level: &Level) -> bool {
    let payload_target = PAYLOAD_LOGGING_TARGETS
        .iter()
        .any(|t| target == *t || target.starts_with(&format!("{t}::")));
    !(payload_target && *level == Level::TRACE)
}

/// Installs the subscriber. `default` is the filter used when `RUST_LOG` is unset.
pub fn init(default: &str) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal (and not with NO_COLOR), so log files stay plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(filter_fn(|m| allowed(m.target(), m.level())));
    let _ = tracing_subscriber::registry()
        .with(env)
        .with(fmt)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_payload_targets() {
        assert!(!allowed("tungstenite::protocol", &Level::TRACE));
        assert!(!allowed("tokio_tungstenite", &Level::TRACE));
        assert!(allowed("tungstenite::protocol", &Level::DEBUG));
        assert!(allowed("cohort_relay::ws", &Level::TRACE));
        assert!(allowed("tungstenitex", &Level::TRACE));
    }
}
