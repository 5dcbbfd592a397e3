//! The `a3s-lane` binary, run as a user runs it, against a queue in Redis (a throwaway
//! prefix on the server at `A3S_LANE_REDIS_URL`) and against a `LocalStorage` directory
//! a test queue made in a temporary directory. Output is read with `--json`.
//!
//! The Redis tests need `A3S_LANE_REDIS_URL`: without it they fail saying how to get
//! one (`bash scripts/test.sh` starts a throwaway server); they never skip.

mod dashboard;
mod redis;
mod storage;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What one run of the binary gave.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The JSON it printed; panics (showing stderr) when it failed.
    pub(crate) fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "the command failed: {self:?}");
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts it failed with exit status 1, a message on stderr containing `needle`,
    /// and nothing on stdout; and that it did not panic.
    pub(crate) fn refused(&self, needle: &str) {
        assert_eq!(self.code, Some(1), "expected exit status 1: {self:?}");
        assert!(
            self.stderr.contains(needle),
            "stderr should say '{needle}': {self:?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        assert!(self.stdout.is_empty(), "{self:?}");
    }
}

/// Runs `a3s-lane` with `args`.
pub(crate) fn a3s_lane<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new(env!("CARGO_BIN_EXE_a3s-lane"))
        .args(args)
        .output()
        .expect("running the a3s-lane binary");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits until `check` holds, up to 10 s.
pub(crate) fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ids of a `commands --json` listing.
pub(crate) fn ids(listing: &Value) -> Vec<u64> {
    listing["commands"]
        .as_array()
        .expect("a commands array")
        .iter()
        .map(|c| c["id"].as_u64().expect("an id"))
        .collect()
}

#[test]
fn bad_command_lines_are_refused_with_usage_errors() {
    let run = a3s_lane([
        "--redis",
        "redis://127.0.0.1:1",
        "pause",
        "x",
        "--for",
        "3q",
    ]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("not a duration"), "{run:?}");
    a3s_lane(["stats"]).refused("say which queue");
    a3s_lane(["--storage", "/nonexistent/a3s-lane-store", "stats"])
        .refused("no LocalStorage store");
}
