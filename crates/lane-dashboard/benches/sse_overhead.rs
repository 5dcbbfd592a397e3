//! The dashboard's cost to the queue: throughput of an in-process queue with a dashboard
//! page connected and streaming (`/api/events` read over a real socket) vs with none,
//! alternated in the same run.
//!
//! ```text
//! cargo bench -p lane-dashboard --bench sse_overhead            # 6 rounds of 20,000 commands
//! EVENTS=1 cargo bench -p lane-dashboard --bench sse_overhead   # the page counts every event
//! cargo bench -p lane-dashboard --bench sse_overhead -- 3 5000  # rounds, commands per round
//! cargo bench -p lane-dashboard --bench sse_overhead -- 6 20000 1000  # handlers wait 1 ms
//! ```
//!
//! The queue records `QueueMetrics` in both arms. By default the dashboard is given them
//! (`DashboardConfig::with_metrics`) and counts from them, holding the event subscription
//! only until a batch's first event; `EVENTS=1` gives it none, so it counts every event;
//! `BARE=1` replaces the page with a bare event subscriber.
//!
//! Each round submits the commands to four lanes (a handler that yields once and returns,
//! or waits the given microseconds) and waits for all of them; the figure is commands per
//! second, and the ratio is also given as the median of each round pair's ratio (robust
//! to a machine whose load drifts). While the page listens to every event, the queue
//! builds and broadcasts each lifecycle event (it builds none while nobody listens); the
//! stream batches them, reads `stats` and writes to the socket every 500 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lane_core::{EventEmitter, LaneConfig, QueueClient, QueueManagerBuilder, handler_fn};
use lane_dashboard::{DashboardConfig, QueueMetrics, router};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LANES: [&str; 4] = ["a", "b", "c", "d"];

async fn round(client: &Arc<dyn QueueClient>, commands: usize) -> f64 {
    let started = Instant::now();
    let mut handles = Vec::with_capacity(commands);
    for n in 0..commands {
        let lane = LANES[n % LANES.len()];
        handles.push(client.submit(lane, "noop", json!(n)).await.expect("submit"));
    }
    for handle in handles {
        handle.await.expect("run");
    }
    commands as f64 / started.elapsed().as_secs_f64()
}

/// A dashboard page: reads the event stream until told to stop; returns bytes read.
async fn reader(addr: std::net::SocketAddr, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET /api/events?lanes=a,b,c,d HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0;
    let mut stop = stop;
    loop {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            },
            _ = stop.changed() => break,
        }
    }
    total
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary with no
    // such flag, and the whole bench in a debug build would take minutes.
    if !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(6);
    let commands: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    // How long each command waits (an I/O-like handler); 0: it yields once and returns.
    let work_us: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut builder = QueueManagerBuilder::new(EventEmitter::new(16_384)).with_handler(
            "noop",
            handler_fn(move |payload, _ctx| async move {
                if work_us == 0 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_micros(work_us)).await;
                }
                Ok::<Value, _>(payload)
            }),
        );
        for (i, lane) in LANES.iter().enumerate() {
            builder = builder.with_lane(*lane, LaneConfig::new(1, 64), i as u8);
        }
        // The queue records metrics in both arms; the dashboard counts from them unless
        // EVENTS=1 (then it counts every event).
        let metrics = QueueMetrics::local();
        builder = builder.with_metrics(metrics.clone());
        let counted_from_events = std::env::var_os("EVENTS").is_some();
        let manager = builder.build().await.expect("build");
        manager.start().await.expect("start");
        let client: Arc<dyn QueueClient> = Arc::new(manager.clone());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = if counted_from_events {
            DashboardConfig::new()
        } else {
            DashboardConfig::new().with_metrics(metrics)
        };
        let app = router(Arc::clone(&client), config);
        tokio::spawn(async move { axum::serve(listener, app).await });

        // Warm-up.
        round(&client, commands / 4).await;
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for _ in 0..rounds {
            without.push(round(&client, commands).await);
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            // BARE=1: a bare event subscriber instead of a dashboard page (the queue's own
            // cost of building events).
            let page = if std::env::var_os("BARE").is_some() {
                let mut events = client.subscribe();
                let mut stop = stop_rx;
                tokio::spawn(async move {
                    use futures_util::StreamExt;
                    let mut n = 0;
                    loop {
                        tokio::select! {
                            e = events.next() => if e.is_none() { break } else { n += 1 },
                            _ = stop.changed() => break,
                        }
                    }
                    n
                })
            } else {
                tokio::spawn(reader(addr, stop_rx))
            };
            // Let the page connect and subscribe.
            tokio::time::sleep(Duration::from_millis(100)).await;
            with.push(round(&client, commands).await);
            // Let the last batch go out.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = stop_tx.send(true);
            bytes += page.await.unwrap_or(0);
        }
        let mut pairs: Vec<f64> = without.iter().zip(&with).map(|(a, b)| b / a).collect();
        let pair_ratio = median(&mut pairs);
        let (a, b) = (median(&mut without), median(&mut with));
        println!(
            "sse_overhead: {rounds} rounds x {commands} commands, 4 lanes of 64, 2 worker \
             threads, handler {}, QueueMetrics on; the page {}",
            if work_us == 0 {
                "yields once (worst case)".to_owned()
            } else {
                format!("waits {work_us} us")
            },
            if std::env::var_os("BARE").is_some() {
                "is a bare event subscriber"
            } else if counted_from_events {
                "counts every event"
            } else {
                "counts from QueueMetrics"
            }
        );
        println!("  without a dashboard:           {a:>10.0} commands/s (median)");
        println!("  with a dashboard streaming:    {b:>10.0} commands/s (median)");
        println!(
            "  ratio with/without:            {:>10.3}  (of the medians; median of the \
             per-round ratios {pair_ratio:.3}; stream read {} KiB)",
            b / a,
            bytes / 1024
        );
        manager.shutdown().await;
    });
}
