//! A demo queue with the dashboard: an in-process `QueueManager` with metrics and dead
//! letters, commands submitted all the time, and commands that fail once (dead letters
//! that run when re-driven).
//!
//! ```text
//! cargo run -p lane-dashboard --example demo -- [--addr 127.0.0.1:9090] [--token T] [--read-only] [--rate N]
//! ```
//!
//! `--rate` is how many commands a second are submitted (default 20). Every 15th command
//! is of type `flaky`: it fails on its first run (and becomes a dead letter), and
//! completes when re-driven.

use std::sync::Arc;
use std::time::Duration;

use lane_core::{
    EventEmitter, LaneConfig, LaneError, QueueClient, QueueManagerBuilder, Schedule, handler_fn,
};
use lane_dashboard::{DashboardConfig, QueueMetrics};
use seen::Seen;
use serde_json::json;

/// A set of keys seen, without another dependency.
mod seen {
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// Keys of `flaky` commands that already failed once.
    #[derive(Debug, Default)]
    pub(crate) struct Seen(Mutex<HashSet<u64>>);

    impl Seen {
        /// True the first time `key` is seen.
        pub(crate) fn first(&self, key: u64) -> bool {
            self.0.lock().map(|mut s| s.insert(key)).unwrap_or(false)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = DashboardConfig::new().with_title("a3s-lane demo");
    let mut rate = 20u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => config = config.with_addr(args.next().ok_or("--addr ADDR")?.parse()?),
            "--token" => config = config.with_token(args.next().ok_or("--token TOKEN")?),
            "--read-only" => config = config.read_only(true),
            "--rate" => rate = args.next().ok_or("--rate N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let metrics = QueueMetrics::local();
    let seen = Arc::new(Seen::default());
    let manager = QueueManagerBuilder::new(EventEmitter::new(4096))
        .with_lane("critical", LaneConfig::new(1, 4), 0)
        .with_lane("emails", LaneConfig::new(1, 3), 1)
        .with_lane("reports", LaneConfig::new(1, 2), 2)
        .with_lane("batch", LaneConfig::new(1, 1), 5)
        .with_dlq(1000)
        .with_metrics(metrics.clone())
        .with_handler(
            "work",
            handler_fn(|payload, _ctx| async move {
                let ms = payload.get("ms").and_then(|v| v.as_u64()).unwrap_or(50);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!({ "slept_ms": ms }))
            }),
        )
        .with_handler("flaky", {
            let seen = Arc::clone(&seen);
            handler_fn(move |payload, _ctx| {
                let seen = Arc::clone(&seen);
                async move {
                    let key = payload.get("key").and_then(|v| v.as_u64()).unwrap_or(0);
                    if seen.first(key) {
                        return Err(LaneError::CommandError(format!(
                            "flaky {key}: the upstream refused (it works on a re-drive)"
                        )));
                    }
                    Ok(json!({ "key": key, "ok": true }))
                }
            })
        })
        .build()
        .await?;
    manager.start().await?;
    let client: Arc<dyn QueueClient> = Arc::new(manager);
    client
        .put_schedule(Schedule::every(
            "heartbeat",
            "critical",
            "work",
            json!({ "ms": 5 }),
            Duration::from_secs(10),
        ))
        .await?;

    // Steady traffic: `rate` commands a second over the lanes.
    if rate > 0 {
        let producer = Arc::clone(&client);
        tokio::spawn(async move {
            let lanes = [
                "critical", "emails", "reports", "batch", "emails", "critical",
            ];
            let mut n: u64 = 0;
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            loop {
                tick.tick().await;
                n += 1;
                let lane = lanes[(n % lanes.len() as u64) as usize];
                let (kind, payload) = if n.is_multiple_of(15) {
                    (
                        "flaky",
                        json!({ "key": n, "customer": format!("c-{}", n % 97) }),
                    )
                } else {
                    ("work", json!({ "ms": 20 + (n * 37) % 400, "job": n }))
                };
                if producer.wait_waiting_below(500, Some(lane)).await.is_err() {
                    continue;
                }
                let _ = producer.submit(lane, kind, payload).await;
            }
        });
    }

    let config = config.with_metrics(metrics);
    let listener = lane_dashboard::bind(&config).await?;
    lane_dashboard::serve(listener, client, config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
