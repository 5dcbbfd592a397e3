//! Delays, start times and start-by deadlines on paused time: a delayed command starts
//! exactly when due and joins the back of its lane in order of due times; a deadline
//! ends a command that could not start, at its instant, and never one that started; a
//! full lane that waits lets a submit in at the moment room appears.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandHandle, EventEmitter, LaneConfig, QueueManager, QueueManagerBuilder, SubmitOptions,
    WhenFull, command_fn,
};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

async fn manager(config: LaneConfig) -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        .with_lane("jobs", config, 0)
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

type Starts = Arc<Mutex<Vec<(String, Duration)>>>;

/// Submits a command named `name` that records its start and then works for `work`.
async fn submit(
    manager: &QueueManager,
    name: &str,
    options: SubmitOptions,
    origin: Instant,
    work: Duration,
    starts: &Starts,
) -> CommandHandle {
    let starts = starts.clone();
    let name = name.to_owned();
    let command = command_fn("job", move |_| {
        let starts = starts.clone();
        let name = name.clone();
        async move {
            starts.lock().push((name, origin.elapsed()));
            tokio::time::sleep(work).await;
            Ok(Value::Null)
        }
    });
    manager
        .submit_with_options("jobs", Box::new(command), &options)
        .await
        .unwrap()
}

fn delay(ms: u64) -> SubmitOptions {
    SubmitOptions::new().with_delay(MS(ms))
}

#[tokio::test(start_paused = true)]
async fn delayed_commands_start_when_due_in_order_of_due_time() {
    let manager = manager(LaneConfig::new(1, 1)).await;
    let origin = Instant::now();
    let starts = Starts::default();
    let late = submit(&manager, "late", delay(300), origin, MS(0), &starts).await;
    let early = submit(&manager, "early", delay(100), origin, MS(0), &starts).await;
    let now = submit(
        &manager,
        "now",
        SubmitOptions::new(),
        origin,
        MS(150),
        &starts,
    )
    .await;
    assert_eq!(manager.stats().await.total_delayed, 2);
    for handle in [late, early, now] {
        handle.await.unwrap();
    }
    // `early` fell due at 100 ms while `now` held the lane's one slot until 150 ms.
    assert_eq!(
        *starts.lock(),
        vec![
            ("now".to_owned(), MS(0)),
            ("early".to_owned(), MS(150)),
            ("late".to_owned(), MS(300)),
        ]
    );
    assert_eq!(manager.stats().await.total_delayed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_ends_a_command_that_could_not_start_at_its_instant() {
    let manager = manager(LaneConfig::new(1, 1)).await;
    let origin = Instant::now();
    let starts = Starts::default();
    let blocker = submit(
        &manager,
        "blocker",
        SubmitOptions::new(),
        origin,
        MS(500),
        &starts,
    )
    .await;
    let within = |ms| SubmitOptions::new().with_start_within(MS(ms));
    let missed = submit(&manager, "missed", within(200), origin, MS(0), &starts).await;
    let met = submit(&manager, "met", within(800), origin, MS(0), &starts).await;
    let error = missed.await.unwrap_err();
    assert!(error.is_expired(), "{error:?}");
    // Answered at the deadline, not when the lane freed up at 500 ms.
    assert_eq!(origin.elapsed(), MS(200));
    blocker.await.unwrap();
    met.await.unwrap();
    let names: Vec<String> = starts.lock().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, ["blocker", "met"]);
    assert_eq!(manager.stats().await.lanes["jobs"].expired, 1);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_command_whose_deadline_passes_while_delayed_expires() {
    let manager = manager(LaneConfig::new(1, 1)).await;
    manager.pause_lane("jobs").unwrap();
    let origin = Instant::now();
    let starts = Starts::default();
    let options = delay(100).with_start_within(MS(300));
    let handle = submit(&manager, "x", options, origin, MS(0), &starts).await;
    assert!(handle.await.unwrap_err().is_expired());
    assert_eq!(origin.elapsed(), MS(300));
    assert!(starts.lock().is_empty());
    let stats = manager.stats().await;
    assert_eq!((stats.total_delayed, stats.total_pending), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_started_command_is_not_expired_by_its_deadline() {
    let manager = manager(LaneConfig::new(1, 1)).await;
    let origin = Instant::now();
    let starts = Starts::default();
    let options = SubmitOptions::new().with_start_within(MS(100));
    // Runs past its start-by deadline: the deadline is about starting, not finishing.
    let handle = submit(&manager, "long", options, origin, MS(1_000), &starts).await;
    handle.await.unwrap();
    assert_eq!(manager.stats().await.lanes["jobs"].expired, 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_submit_gets_in_the_moment_room_appears() {
    let config = LaneConfig::new(1, 1)
        .with_max_waiting(1)
        .with_when_full(WhenFull::Wait { timeout: None });
    let manager = manager(config).await;
    let origin = Instant::now();
    let starts = Starts::default();
    let running = submit(
        &manager,
        "running",
        SubmitOptions::new(),
        origin,
        MS(400),
        &starts,
    )
    .await;
    let waiting = submit(
        &manager,
        "waiting",
        SubmitOptions::new(),
        origin,
        MS(0),
        &starts,
    )
    .await;
    // The lane is full (one waiting); this submit returns when `waiting` starts at 400 ms.
    let third = submit(
        &manager,
        "third",
        SubmitOptions::new(),
        origin,
        MS(0),
        &starts,
    )
    .await;
    assert_eq!(origin.elapsed(), MS(400));
    for handle in [running, waiting, third] {
        handle.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_submit_gives_up_after_its_timeout() {
    let config = LaneConfig::new(1, 1)
        .with_max_waiting(1)
        .with_when_full(WhenFull::Wait {
            timeout: Some(MS(250)),
        });
    let manager = manager(config).await;
    manager.pause_lane("jobs").unwrap();
    let origin = Instant::now();
    let command = || Box::new(command_fn("job", |_| async { Ok(Value::Null) }));
    let _first = manager.submit_with_handle("jobs", command()).await.unwrap();
    let error = manager
        .submit_with_handle("jobs", command())
        .await
        .unwrap_err();
    assert!(error.is_lane_full(), "{error:?}");
    assert_eq!(origin.elapsed(), MS(250));
    assert_eq!(manager.stats().await.lanes["jobs"].rejected_full, 1);
}
