//! What the CLI prints: receipts, sizes, and the tracing setup.

use promote_core::Outcome;
use serde_json::json;

/// Logs go to stderr: `-v` info, `-vv` debug, `-vvv` trace; otherwise `RUST_LOG`; otherwise
/// warnings only.
pub(crate) fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match verbose {
        0 => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        1 => EnvFilter::new("info"),
        2 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// One line (or one JSON object) for a successful promotion.
pub(crate) fn receipt(outcome: &Outcome, json: bool) -> String {
    let r = outcome.receipt();
    if json {
        json!({
            "outcome": outcome.label(),
            "key": r.key.as_str(),
            "size": r.size,
            "sha256": r.sha256.to_string(),
            "version": r.version,
        })
        .to_string()
    } else {
        format!("{:<15} {}  {}  sha256:{}", outcome.label(), r.key, bytes(r.size), r.sha256)
    }
}

/// `1.5 MiB`-style sizes.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
