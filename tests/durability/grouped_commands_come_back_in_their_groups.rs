//! Groups across a restart with `LocalStorage`: unfinished replayable commands submitted
//! in groups come back in their groups (shown by `group_status` and `groups` before they
//! run), take their groups' turns and keep their groups' caps, and every one of them
//! runs.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandContext, GroupLimits, GroupStatus, LaneConfig, LocalStorage, Page, QueueClient,
    QueueManager, SubmitOptions, handler_fn,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::support::{ValueLog, one_lane, stop_and_drain, storage};

/// The commands of the first life, in submit order: three of group `a`, two of `b`.
const SUBMITTED: [(&str, u64); 5] = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2)];

/// A lane of `max` concurrent commands whose groups run one command at a time.
fn config(max: usize) -> LaneConfig {
    LaneConfig::new(1, max).with_group_limits(GroupLimits::new().with_max_concurrency(1))
}

/// A handler that never finishes on its own: it waits until it is cancelled.
fn stuck() -> impl a3s_lane::Handler {
    handler_fn(|_payload: Value, ctx: CommandContext| async move {
        ctx.cancelled().await;
        Err(a3s_lane::LaneError::Cancelled("stopped".into()))
    })
}

/// A handler that records `"<group><n>"` from the payload, then waits for a permit of
/// `gate` (none: it finishes at once).
fn recording(log: &ValueLog, gate: Option<Arc<Semaphore>>) -> impl a3s_lane::Handler {
    let log = log.clone();
    handler_fn(move |payload: Value, _ctx: CommandContext| {
        let log = log.clone();
        let gate = gate.clone();
        async move {
            log.push(json!(format!(
                "{}{}",
                payload["group"].as_str().unwrap(),
                payload["n"]
            )));
            if let Some(gate) = gate {
                gate.acquire().await.unwrap().forget();
            }
            Ok(payload)
        }
    })
}

/// The group status of `group` in lane `work` as the client shows it.
async fn status(manager: &QueueManager, group: &str) -> GroupStatus {
    QueueClient::group_status(manager, "work", group)
        .await
        .unwrap()
}

/// `(group, pending, active)` of every group `groups` lists for lane `work`.
async fn listed(manager: &QueueManager) -> Vec<(String, usize, usize)> {
    QueueClient::groups(manager, "work", Page::default())
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.group, g.pending, g.active))
        .collect()
}

/// First life in `dir`: the lane is paused, so the commands of [`SUBMITTED`] wait in
/// their groups; the process then shuts down without running any of them.
async fn first_life(dir: &std::path::Path) {
    let store = storage(dir).await;
    let manager = one_lane(config(1))
        .with_storage(store.clone())
        .with_handler("job", stuck())
        .build()
        .await
        .unwrap();
    manager.pause_lane("work").unwrap();
    manager.start().await.unwrap();
    for (group, n) in SUBMITTED {
        let handle = manager
            .submit_replayable_with(
                "work",
                "job",
                json!({ "group": group, "n": n }),
                &SubmitOptions::new().with_group(group),
            )
            .await
            .unwrap();
        drop(handle);
    }
    assert_eq!(status(&manager, "a").await.pending, 3);
    assert_eq!(status(&manager, "b").await.pending, 2);
    // Each command is stored with its group.
    let stored: Vec<(Option<String>, Value)> = store
        .load_commands()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.group, c.payload["group"].clone()))
        .collect();
    assert_eq!(stored.len(), SUBMITTED.len());
    for (group, payload_group) in &stored {
        assert_eq!(group.as_deref(), payload_group.as_str(), "{stored:?}");
    }
    manager.shutdown_now().await;
    manager.drain(Duration::from_secs(5)).await.unwrap();
    // Reopening the store waits for this queue to release it.
    drop(manager);
    drop(store);
}

/// Second life in `dir`: a queue over the reopened store, started with its lane paused,
/// so that the recovered commands wait.
async fn second_life(
    dir: &std::path::Path,
    max: usize,
    log: &ValueLog,
    gate: Option<Arc<Semaphore>>,
) -> (QueueManager, Arc<LocalStorage>) {
    let store = storage(dir).await;
    let manager = one_lane(config(max))
        .with_storage(store.clone())
        .with_handler("job", recording(log, gate))
        .build()
        .await
        .unwrap();
    manager.pause_lane("work").unwrap();
    manager.start().await.unwrap();
    (manager, store)
}

/// Waits until `log` holds `n` entries (a few seconds at most).
async fn until_logged(log: &ValueLog, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while log.len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} commands never started: {:?}", log.values()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_commands_wait_in_their_groups_and_take_their_turns() {
    let dir = tempfile::tempdir().unwrap();
    first_life(dir.path()).await;

    let log = ValueLog::default();
    let (manager, store) = second_life(dir.path(), 1, &log, None).await;
    // Back, waiting: each in its group.
    let a = status(&manager, "a").await;
    assert_eq!((a.pending, a.active, a.max_concurrency), (3, 0, Some(1)));
    let b = status(&manager, "b").await;
    assert_eq!((b.pending, b.active, b.max_concurrency), (2, 0, Some(1)));
    assert_eq!(
        listed(&manager).await,
        [("a".to_owned(), 3, 0), ("b".to_owned(), 2, 0)]
    );

    manager.resume_lane("work").unwrap();
    until_logged(&log, SUBMITTED.len()).await;
    stop_and_drain(&manager).await;
    // Every one ran once, the groups taking turns (a lane without groups would keep the
    // submit order, a1 a2 a3 b1 b2), each group in its own order.
    let ran: Vec<String> = log
        .values()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ran.len(), SUBMITTED.len(), "{ran:?}");
    let group_of = |entry: &String| entry[..1].to_owned();
    for pair in ran[..4].windows(2) {
        assert_ne!(group_of(&pair[0]), group_of(&pair[1]), "no turns: {ran:?}");
    }
    for group in ["a", "b"] {
        let order: Vec<&String> = ran.iter().filter(|e| group_of(e) == group).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "group {group} out of order: {ran:?}");
    }
    assert_eq!(ran[4], "a3", "{ran:?}");
    assert!(store.load_commands().await.unwrap().is_empty());
    assert_eq!(status(&manager, "a").await.pending, 0);
    assert_eq!(listed(&manager).await, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_commands_keep_their_groups_caps() {
    let dir = tempfile::tempdir().unwrap();
    first_life(dir.path()).await;

    // Two may run at once in the lane, one per group.
    let log = ValueLog::default();
    let gate = Arc::new(Semaphore::new(0));
    let (manager, store) = second_life(dir.path(), 2, &log, Some(gate.clone())).await;
    assert_eq!(
        listed(&manager).await,
        [("a".to_owned(), 3, 0), ("b".to_owned(), 2, 0)]
    );
    manager.resume_lane("work").unwrap();
    until_logged(&log, 2).await;
    // Without their groups the first two of the lane (a1, a2) would run together.
    assert_eq!(
        listed(&manager).await,
        [("a".to_owned(), 2, 1), ("b".to_owned(), 1, 1)]
    );
    let mut running = log.values();
    running.sort_by_key(|v| v.to_string());
    assert_eq!(running, [json!("a1"), json!("b1")]);

    gate.add_permits(SUBMITTED.len());
    until_logged(&log, SUBMITTED.len()).await;
    stop_and_drain(&manager).await;
    let mut ran: Vec<String> = log
        .values()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ran.sort();
    assert_eq!(ran, ["a1", "a2", "a3", "b1", "b2"]);
    assert!(store.load_commands().await.unwrap().is_empty());
}
