//! The exchange script seen by hand-driven workers: leases, fencing, takeover, durable
//! cancel. Needs a Redis server (A3S_LANE_REDIS_URL); fails without one.

use std::time::Duration;

use lane_core::{HandlerRegistry, LaneError};
use serde_json::json;

use super::{Completion, Shared};
use crate::{CancelOutcome, RedisQueue, RedisQueueConfig, RedisWorkerConfig};
use lane_core::LaneConfig;

pub(super) fn redis_url() -> String {
    match std::env::var("A3S_LANE_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "A3S_LANE_REDIS_URL is not set, and this test needs a Redis server. Run \
             `bash scripts/test.sh` (it starts a throwaway redis-server on a free port), or \
             set A3S_LANE_REDIS_URL=redis://HOST:PORT to use a running one."
        ),
    }
}

/// A queue of one lane "jobs" (cap 10) under a prefix of its own, cleared when dropped.
pub(super) struct Fixture {
    pub(super) queue: RedisQueue,
    prefix: String,
}

impl Fixture {
    async fn new(test: &str) -> Self {
        Self::with_lane(test, |lane| lane).await
    }

    /// A fixture whose lane "jobs" is `configure`d (group limits, say).
    pub(super) async fn with_lane(
        test: &str,
        configure: impl FnOnce(LaneConfig) -> LaneConfig,
    ) -> Self {
        let prefix = format!(
            "a3s-unit-{test}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        );
        let config = RedisQueueConfig::new(redis_url())
            .with_key_prefix(&prefix)
            .with_lane("jobs", configure(LaneConfig::new(1, 10)), 0);
        Self {
            queue: RedisQueue::connect(config).await.unwrap(),
            prefix,
        }
    }

    /// A worker driven by hand: no driver task, no heartbeat timer.
    pub(super) fn worker(&self, id: &str, lease: Duration) -> Shared {
        Shared {
            queue: self.queue.clone(),
            handlers: HandlerRegistry::default(),
            config: RedisWorkerConfig::new(8)
                .with_worker_id(id)
                .with_lease_ttl(lease),
            id: id.to_owned(),
            prefix: self.queue.key_prefix().to_owned(),
            progress: Default::default(),
            lane_runs: Default::default(),
            schedules: Default::default(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // On its own runtime and connection: the test's runtime is shutting down.
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = RedisQueueConfig::new(redis_url()).with_key_prefix(prefix);
                if let Ok(queue) = RedisQueue::connect(config).await {
                    let _ = queue.clear().await;
                }
            });
        })
        .join();
    }
}

fn done(id: u64, token: &str, kind: &'static str, data: &str) -> Completion {
    Completion {
        id,
        token: token.to_owned(),
        kind,
        hold: false,
        data: data.to_owned(),
        delay_us: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_after_the_lease_was_taken_over_is_rejected() {
    let fixture = Fixture::new("fencing").await;
    let mut conn = fixture.queue.conn();
    let handle = fixture.queue.submit("jobs", "t", json!(1)).await.unwrap();
    let id = handle.id();

    let a = fixture.worker("worker-a", Duration::from_millis(200));
    let first = a.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    assert_eq!(first.claims.len(), 1);
    let stale_token = first.claims[0].token.clone();

    // A stalls past its lease; B's next round trip takes the command over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = fixture.worker("worker-b", Duration::from_secs(10));
    let second = b.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    assert_eq!(second.claims.len(), 1);
    assert_eq!(second.claims[0].id, id);
    assert_eq!(second.claims[0].attempt, 2);
    let token: u64 = second.claims[0].token.parse().unwrap();
    assert!(token > stale_token.parse().unwrap(), "fencing tokens grow");

    // A wakes up and reports: rejected, and told its lease is gone.
    let late = a
        .exchange(
            &mut conn,
            &[done(id, &stale_token, "ok", "\"from a\"")],
            0,
            true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(late.stale, 1);
    assert!(late.lost);

    let current = b
        .exchange(
            &mut conn,
            &[done(id, &second.claims[0].token, "ok", "\"from b\"")],
            0,
            true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(current.stale, 0);
    assert!(!current.lost);
    assert_eq!(handle.await.unwrap(), json!("from b"));

    let stats = fixture.queue.stats().await.unwrap();
    assert_eq!(stats.counter("completed"), 1);
    assert_eq!(stats.counter("stale"), 1);
    assert_eq!(stats.counter("requeued"), 1);
    assert_eq!(stats.counter("workers_lost"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_a_worker_that_never_read_its_wake_list() {
    let fixture = Fixture::new("durable-cancel").await;
    let mut conn = fixture.queue.conn();
    let handle = fixture.queue.submit("jobs", "t", json!(1)).await.unwrap();
    let a = fixture.worker("worker-a", Duration::from_secs(10));
    let claimed = a.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    let token = claimed.claims[0].token.clone();

    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Signalled);
    // The worker's next round trip (a heartbeat) carries the request.
    let heartbeat = a.exchange(&mut conn, &[], 0, true, None).await.unwrap();
    assert_eq!(heartbeat.cancels, vec![handle.id()]);
    let again = a.exchange(&mut conn, &[], 0, true, None).await.unwrap();
    assert!(again.cancels.is_empty(), "delivered once");

    let reason = crate::wire::encode_error(&LaneError::Cancelled("stopped".into()));
    a.exchange(
        &mut conn,
        &[done(handle.id(), &token, "cancel", &reason)],
        0,
        true,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        handle.await.unwrap_err(),
        LaneError::Cancelled("stopped".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_command_of_a_dead_worker_ends_instead_of_running_again() {
    let fixture = Fixture::new("cancel-dead").await;
    let mut conn = fixture.queue.conn();
    let handle = fixture.queue.submit("jobs", "t", json!(1)).await.unwrap();
    let a = fixture.worker("worker-a", Duration::from_millis(200));
    a.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    assert_eq!(handle.cancel().await.unwrap(), CancelOutcome::Signalled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = fixture.worker("worker-b", Duration::from_secs(10));
    let reply = b.exchange(&mut conn, &[], 4, false, None).await.unwrap();
    assert!(reply.claims.is_empty());
    assert!(handle.await.unwrap_err().is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_a_dead_worker_go_back_to_the_front_of_their_lane_in_order() {
    let fixture = Fixture::new("requeue-order").await;
    let mut conn = fixture.queue.conn();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            fixture
                .queue
                .submit("jobs", "t", json!(i))
                .await
                .unwrap()
                .id(),
        );
    }
    let a = fixture.worker("worker-a", Duration::from_millis(200));
    let claimed = a.exchange(&mut conn, &[], 3, false, None).await.unwrap();
    assert_eq!(
        claimed.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[..3]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = fixture.worker("worker-b", Duration::from_secs(10));
    let reply = b.exchange(&mut conn, &[], 5, false, None).await.unwrap();
    assert_eq!(reply.claims.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_told_when_to_look_again_for_housekeeping() {
    let fixture = Fixture::new("wait-hint").await;
    let mut conn = fixture.queue.conn();
    let a = fixture.worker("worker-a", Duration::from_secs(3));
    let alone = a.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    assert_eq!(alone.wait_ms, -1, "nothing to wait for: block until woken");
    let b = fixture.worker("worker-b", Duration::from_secs(10));
    let reply = b.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    assert!(
        (2_000..=3_000).contains(&reply.wait_ms),
        "look again when a's lease may expire: {} ms",
        reply.wait_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_that_claims_nothing_leaves_a_wake_up_for_the_next_one() {
    let fixture = Fixture::new("keep-wake").await;
    let mut conn = fixture.queue.conn();
    let a = fixture.worker("worker-a", Duration::from_secs(10));
    // Idle with free slots: the next submit wakes it.
    let idle = a.exchange(&mut conn, &[], 4, false, None).await.unwrap();
    assert!(idle.claims.is_empty());
    let handle = fixture.queue.submit("jobs", "t", json!(1)).await.unwrap();
    let wake_key = format!("{}:wake:worker-a", fixture.queue.key_prefix());
    let pending: usize = redis::cmd("LLEN")
        .arg(&wake_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, 1, "the submit woke the idle worker");
    // A report that claims nothing (its free slots belong to another round trip)...
    a.exchange(&mut conn, &[], 0, true, None).await.unwrap();
    let pending: usize = redis::cmd("LLEN")
        .arg(&wake_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, 1, "...leaves the wake-up in place");
    let claiming = a.exchange(&mut conn, &[], 4, true, None).await.unwrap();
    assert_eq!(claiming.claims.len(), 1);
    assert_eq!(claiming.claims[0].id, handle.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_whose_reply_was_lost_go_back_when_the_worker_reconciles() {
    let fixture = Fixture::new("reconcile").await;
    let mut conn = fixture.queue.conn();
    let kept = fixture.queue.submit("jobs", "t", json!(1)).await.unwrap();
    let orphan = fixture.queue.submit("jobs", "t", json!(2)).await.unwrap();
    let cancelled = fixture.queue.submit("jobs", "t", json!(3)).await.unwrap();
    let a = fixture.worker("worker-a", Duration::from_secs(10));

    // The worker knows of its first claim; the reply of the second was "lost".
    let first = a.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    assert_eq!(first.claims[0].id, kept.id());
    let lost = a.exchange(&mut conn, &[], 2, true, None).await.unwrap();
    let ids: Vec<u64> = lost.claims.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        vec![orphan.id(), cancelled.id()],
        "{:?}",
        fixture.queue.stats().await.unwrap()
    );
    assert_eq!(cancelled.cancel().await.unwrap(), CancelOutcome::Signalled);

    // A heartbeat alone would keep the orphans running here for ever; reconciling hands
    // them back: the uncancelled one to the front of its lane, not counted as a run.
    let reconciled = a
        .exchange(&mut conn, &[], 0, true, Some((&[kept.id()], &[])))
        .await
        .unwrap();
    assert_eq!(reconciled.given_back, 2);
    assert!(reconciled.claims.is_empty());
    assert_eq!(
        cancelled.await.unwrap_err(),
        LaneError::Cancelled("cancelled before it started".into())
    );
    let b = fixture.worker("worker-b", Duration::from_secs(10));
    let again = b.exchange(&mut conn, &[], 4, false, None).await.unwrap();
    assert_eq!(again.claims.len(), 1);
    assert_eq!(again.claims[0].id, orphan.id());
    assert_eq!(
        again.claims[0].attempt, 1,
        "a run that never started does not count"
    );
    let record = fixture.queue.command(kept.id()).await.unwrap().unwrap();
    assert_eq!(
        record.worker.as_deref(),
        Some("worker-a"),
        "a known run stays"
    );
    // The cancelled orphan counts as cancelled, the other as given back.
    assert_eq!(
        fixture.queue.stats().await.unwrap().counter("given_back"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_slot_stays_taken_until_freed_or_its_worker_is_gone() {
    let fixture = Fixture::new("held").await;
    let mut conn = fixture.queue.conn();
    let lane_active = |stats: crate::RedisQueueStats| stats.queue.lanes["jobs"].active;
    let first = fixture.queue.submit("jobs", "t", json!(1)).await.unwrap();
    let second = fixture.queue.submit("jobs", "t", json!(2)).await.unwrap();
    let a = fixture.worker("worker-a", Duration::from_millis(300));
    let claimed = a.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    let token = claimed.claims[0].token.clone();

    // Answered (the submitter hears), but the handler still runs: the slot stays.
    let reason = crate::wire::encode_error(&LaneError::Cancelled("stopped".into()));
    let mut held = done(first.id(), &token, "cancel", &reason);
    held.hold = true;
    a.exchange(&mut conn, &[held], 0, true, None).await.unwrap();
    assert!(first.await.unwrap_err().is_cancelled());
    let stats = fixture.queue.stats().await.unwrap();
    assert_eq!(stats.counter("abandoned"), 1);
    assert_eq!(lane_active(stats), 1);

    // The handler returned: the slot is free.
    let freed = Completion {
        id: claimed.claims[0].id,
        token: String::new(),
        kind: "freed",
        hold: false,
        data: String::new(),
        delay_us: 0,
    };
    a.exchange(&mut conn, &[freed], 0, true, None)
        .await
        .unwrap();
    assert_eq!(lane_active(fixture.queue.stats().await.unwrap()), 0);

    // Held again, then the worker dies: whoever removes it frees the slot.
    let claimed = a.exchange(&mut conn, &[], 1, true, None).await.unwrap();
    assert_eq!(claimed.claims[0].id, second.id());
    let mut held = done(second.id(), &claimed.claims[0].token, "cancel", &reason);
    held.hold = true;
    a.exchange(&mut conn, &[held], 0, true, None).await.unwrap();
    assert_eq!(lane_active(fixture.queue.stats().await.unwrap()), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = fixture.worker("worker-b", Duration::from_secs(10));
    b.exchange(&mut conn, &[], 0, false, None).await.unwrap();
    assert_eq!(lane_active(fixture.queue.stats().await.unwrap()), 0);
}

/// Sleeps until the clock is a little past `ms` (the test runs next to its Redis server:
/// the margin covers the clocks' difference).
async fn sleep_past(ms: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let until = ms + 30;
    if until > now {
        tokio::time::sleep(Duration::from_millis(until - now)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_racing_one_instant_fire_it_once() {
    use super::schedules::{Fired, fire, look, read_due};
    let fixture = Fixture::new("schedule-race").await;
    let a = fixture.worker("worker-a", Duration::from_secs(10));
    let b = fixture.worker("worker-b", Duration::from_secs(10));
    let (mut conn_a, mut conn_b) = (fixture.queue.conn(), fixture.queue.conn());
    let tick = lane_core::Schedule::every(
        "tick",
        "jobs",
        "t",
        json!({"n": 1}),
        Duration::from_millis(200),
    );
    let info = fixture.queue.put_schedule(tick).await.unwrap();

    // Both read the same due instant; the second compare-and-set finds it gone.
    sleep_past(info.next_fire_at_ms.unwrap()).await;
    let (now, _, due) = read_due(&a, &mut conn_a).await.unwrap();
    assert_eq!(due.len(), 1);
    let (name, def, state) = &due[0];
    let first = fire(&a, &mut conn_a, now, name, def, state).await.unwrap();
    let second = fire(&b, &mut conn_b, now, name, def, state).await.unwrap();
    assert!(
        matches!((first, second), (Fired::Won, Fired::Lost)),
        "one fires, the other loses"
    );

    // Two workers looking at once, instant after instant: each instant fires once.
    for _ in 0..8 {
        let next = fixture.queue.schedules().await.unwrap()[0]
            .next_fire_at_ms
            .unwrap();
        sleep_past(next).await;
        let (x, y) = tokio::join!(look(&a, &mut conn_a), look(&b, &mut conn_b));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.won + y.won, 1, "{x:?} {y:?}");
        assert!(x.earliest.unwrap() > next && y.earliest.unwrap() > next);
    }
    let info = &fixture.queue.schedules().await.unwrap()[0];
    assert_eq!((info.fired, info.skipped), (9, 0));

    // A replace (here of the payload) whose clock reading came before the last fire
    // cannot re-arm that instant: the script sends it back to start after it.
    let last = info.last_fired_at_ms.unwrap();
    let mut changed = info.schedule.clone();
    changed.payload = json!({"n": 2});
    let reply: Vec<String> = crate::scripts::SCRIPTS
        .schedule_put
        .key(fixture.queue.key_prefix())
        .arg("tick")
        .arg(serde_json::to_string(&changed).unwrap())
        .arg("jobs")
        .arg(last.to_string())
        .arg("")
        .invoke_async(&mut conn_a)
        .await
        .unwrap();
    assert_eq!(reply, ["stale".to_owned(), last.to_string()]);
    let replaced = fixture.queue.put_schedule(changed).await.unwrap();
    assert!(replaced.next_fire_at_ms.unwrap() > last);
    assert_eq!(replaced.schedule.payload, json!({"n": 2}));
    // The same schedule put again keeps its next instant, whatever the caller's clock.
    let again = fixture
        .queue
        .put_schedule(replaced.schedule.clone())
        .await
        .unwrap();
    assert_eq!(again.next_fire_at_ms, replaced.next_fire_at_ms);
    assert_eq!(replaced.fired, 9, "a replace keeps the counts");
    assert_eq!(
        fixture.queue.stats().await.unwrap().counter("submitted"),
        9,
        "one command per instant"
    );
    let last = fixture
        .queue
        .command(info.last_command_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.payload, json!({"n": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_instants_and_a_full_lane_are_skipped_with_their_reason() {
    use super::schedules::look;
    let fixture = Fixture::new("schedule-skips").await;
    let queue = &fixture.queue;
    queue
        .declare_lane("small", LaneConfig::new(1, 1).with_max_waiting(1), 0)
        .await
        .unwrap();
    let w = fixture.worker("worker-a", Duration::from_secs(10));
    let mut conn = queue.conn();
    let mut events = queue.subscribe();
    let every = Duration::from_millis(200);
    let schedule =
        |name: &str, lane: &str| lane_core::Schedule::every(name, lane, "t", json!(null), every);

    // Hourly schedules down for three hours, looked at more than the missed grace after
    // the hour: the missed instants are skipped (Missed::Skip), or the latest fires once
    // (Missed::RunOnce).
    let hour = 3_600_000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    if now % hour < 20_000 {
        tokio::time::sleep(Duration::from_millis(20_000 - now % hour)).await;
    }
    for (name, missed) in [
        ("skip", lane_core::Missed::Skip),
        ("run-once", lane_core::Missed::RunOnce),
    ] {
        let hourly =
            lane_core::Schedule::every(name, "jobs", "t", json!(null), Duration::from_secs(3600));
        let info = queue
            .put_schedule(hourly.with_missed(missed))
            .await
            .unwrap();
        let next = info.next_fire_at_ms.unwrap() - 4 * hour;
        let _: () = redis::pipe()
            .hset(
                format!("{}:sched_state", queue.key_prefix()),
                name,
                format!("0|{next}||||"),
            )
            .zadd(format!("{}:sched_next", queue.key_prefix()), name, next)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let looked = look(&w, &mut conn).await.unwrap();
    assert_eq!(looked.won, 2);
    let listed = queue.schedules().await.unwrap();
    let by_name = |name: &str| listed.iter().find(|i| i.schedule.name == name).unwrap();
    assert_eq!((by_name("skip").fired, by_name("skip").skipped), (0, 1));
    assert_eq!(
        (by_name("run-once").fired, by_name("run-once").skipped),
        (1, 1)
    );

    // A full lane refuses the instant: skipped, with the lane's refusal as the reason.
    let _held = queue.submit("small", "t", json!(1)).await.unwrap();
    let info = queue.put_schedule(schedule("full", "small")).await.unwrap();
    sleep_past(info.next_fire_at_ms.unwrap()).await;
    look(&w, &mut conn).await.unwrap();
    let full = queue
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.schedule.name == "full")
        .unwrap();
    assert_eq!((full.fired, full.skipped), (0, 1));

    let mut skips = Vec::new();
    while skips.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the skip events")
            .unwrap();
        if event.key == lane_core::event::keys::SCHEDULE_SKIPPED {
            skips.push(event.payload);
        }
    }
    skips.sort_by_key(|p| p["schedule"].as_str().unwrap().to_owned());
    assert_eq!(skips[0]["schedule"], "full");
    assert!(
        skips[0]["reason"].as_str().unwrap().contains("is full"),
        "{skips:?}"
    );
    assert_eq!(skips[0]["from_ms"], skips[0]["until_ms"]);
    assert_eq!(skips[1]["schedule"], "run-once");
    assert_eq!(skips[2]["schedule"], "skip");
    assert_eq!(skips[2]["reason"], "missed");
    let (from, until) = (
        skips[2]["from_ms"].as_u64().unwrap(),
        skips[2]["until_ms"].as_u64().unwrap(),
    );
    assert_eq!(
        until - from,
        3 * hour,
        "four missed instants: {from}..{until}"
    );
    assert_eq!(
        skips[1]["until_ms"].as_u64().unwrap() + 1,
        by_name("run-once").last_fired_at_ms.unwrap(),
        "RunOnce skips up to the latest and fires it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instant_read_before_a_pause_or_removal_does_not_fire_after_it() {
    use super::schedules::{Fired, fire, read_due};
    let fixture = Fixture::new("schedule-after-change").await;
    let queue = &fixture.queue;
    let w = fixture.worker("worker-a", Duration::from_secs(10));
    let mut conn = queue.conn();
    for change in ["pause", "remove"] {
        let info = queue
            .put_schedule(lane_core::Schedule::every(
                "tick",
                "jobs",
                "t",
                json!(null),
                Duration::from_millis(100),
            ))
            .await
            .unwrap();
        sleep_past(info.next_fire_at_ms.unwrap()).await;
        let (now, _, due) = read_due(&w, &mut conn).await.unwrap();
        let (name, def, state) = &due[0];
        match change {
            "pause" => queue.pause_schedule("tick").await.unwrap(),
            _ => assert!(queue.remove_schedule("tick").await.unwrap()),
        }
        let fired = fire(&w, &mut conn, now, name, def, state).await.unwrap();
        assert!(matches!(fired, Fired::Lost), "fired after a {change}");
        let (_, _, due) = read_due(&w, &mut conn).await.unwrap();
        assert!(due.is_empty(), "nothing due after a {change}");
        let _ = queue.remove_schedule("tick").await;
    }
    assert_eq!(queue.stats().await.unwrap().counter("schedule_fired"), 0);
}
