//! The process's CPU time, for benches that report CPU per command next to wall time.

use std::time::Duration;

/// User plus system CPU time of this process so far (Linux: fields 14 and 15 of
/// `/proc/self/stat`, in clock ticks of 10 ms; zero elsewhere).
pub(crate) fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}
