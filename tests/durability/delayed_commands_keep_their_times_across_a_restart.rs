//! Delayed commands and start-by deadlines with `LocalStorage`: the store keeps a
//! command's start time and deadline, a delayed command recovered before its start time
//! waits for the rest of its delay, and a deadline that passed while no process ran the
//! queue ends the command as expired, unrun.

use std::time::{Duration, SystemTime};

use a3s_lane::{CommandState, LaneConfig, StoredCommand, SubmitOptions, event_keys};
use serde_json::json;

use crate::support::{ValueLog, one_lane, stop_and_drain, storage};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A handler that logs each run's `n` and the time it started.
fn timed_log(log: &ValueLog) -> impl a3s_lane::Handler {
    let log = log.clone();
    a3s_lane::handler_fn(
        move |payload: serde_json::Value, _ctx: a3s_lane::CommandContext| {
            log.push(json!({ "n": payload["n"], "at": now_ms() }));
            async { Ok(serde_json::Value::Null) }
        },
    )
}

/// Submits `n` with `options` to a queue over the store in `dir` that never starts, and
/// stops it at once: the command is left in the store. Returns it as stored, and the
/// bounds of the submit's time.
async fn leave_in_store(
    dir: &std::path::Path,
    options: &SubmitOptions,
) -> (StoredCommand, std::ops::RangeInclusive<u64>) {
    let log = ValueLog::default();
    let store = storage(dir).await;
    let manager = one_lane(LaneConfig::new(1, 1))
        .with_storage(store.clone())
        .with_handler("job", timed_log(&log))
        .build()
        .await
        .unwrap();
    let before = now_ms();
    let handle = manager
        .submit_replayable_with("work", "job", json!({ "n": 1 }), options)
        .await
        .unwrap();
    let after = now_ms();
    drop(handle);
    manager.shutdown_now().await;
    manager.drain(Duration::from_secs(5)).await.unwrap();
    let stored = store.load_commands().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(log.values().is_empty(), "nothing ran in the first life");
    (stored.into_iter().next().unwrap(), before..=after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_delayed_command_waits_for_the_rest_of_its_delay() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(600);
    let deadline = Duration::from_secs(3600);
    let options = SubmitOptions::new()
        .with_delay(delay)
        .with_start_within(deadline);
    let (stored, submit) = leave_in_store(dir.path(), &options).await;
    let at = stored.not_before.expect("the start time is stored");
    let by = stored.start_by.expect("the deadline is stored");
    let ms = |d: Duration| d.as_millis() as u64;
    assert!((submit.start() + ms(delay)..=submit.end() + ms(delay)).contains(&at));
    assert!((submit.start() + ms(deadline)..=submit.end() + ms(deadline)).contains(&by));

    // Second life, before the start time: the command waits, then runs once.
    let log = ValueLog::default();
    let store = storage(dir.path()).await;
    let manager = one_lane(LaneConfig::new(1, 1))
        .with_storage(store.clone())
        .with_handler("job", timed_log(&log))
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    assert!(now_ms() < at, "the restart took longer than the delay");
    let status = manager.queue().command_status(stored.id).unwrap();
    assert_eq!(status.state, CommandState::Delayed);
    stop_and_drain(&manager).await;
    let runs = log.values();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let ran = runs[0]["at"].as_u64().unwrap();
    assert!(ran >= at, "ran at {ran}, before its start time {at}");
    assert!(store.load_commands().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passed_while_down_expires_the_command_unrun() {
    let dir = tempfile::tempdir().unwrap();
    let options = SubmitOptions::new().with_start_within(Duration::from_millis(300));
    let (stored, _) = leave_in_store(dir.path(), &options).await;
    let by = stored.start_by.expect("the deadline is stored");
    assert_eq!(stored.not_before, None);
    tokio::time::sleep(Duration::from_millis(by.saturating_sub(now_ms()) + 50)).await;

    let log = ValueLog::default();
    let store = storage(dir.path()).await;
    let manager = one_lane(LaneConfig::new(1, 1))
        .with_storage(store.clone())
        .with_handler("job", timed_log(&log))
        .build()
        .await
        .unwrap();
    let mut events = manager.subscribe();
    manager.start().await.unwrap();
    let expired = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let event = events.recv().await.expect("the queue is alive");
            if event.key == event_keys::COMMAND_EXPIRED {
                return event;
            }
        }
    })
    .await
    .expect("the recovered command expires");
    assert_eq!(expired.payload["command_id"], stored.id);
    stop_and_drain(&manager).await;
    assert!(log.values().is_empty(), "an expired command never runs");
    assert!(store.load_commands().await.unwrap().is_empty());
}
