//! Recurring schedules: a named schedule submits its command at each instant, once;
//! schedules are put (created or replaced), listed with their next instant, paused,
//! resumed and removed; bad ones are refused; a durable engine keeps them across a
//! restart.

use std::collections::HashSet;
use std::time::Duration;

use a3s_lane::{LaneConfig, LaneError, Schedule, event_keys};
use serde_json::json;

use crate::engine::{Engine, Harness, Spec};
use crate::{Gated, conformance, registry, within};

conformance!(a_schedule_fires_each_instant_once);
conformance!(schedules_are_put_listed_paused_resumed_and_removed);
conformance!(bad_schedules_are_refused_at_the_boundary);
conformance!(a_schedule_is_kept_across_a_restart: local_storage, redis, redis_cluster);

const TICK: Duration = Duration::from_millis(300);

fn ticking(name: &str) -> Schedule {
    Schedule::every(name, "jobs", "job", json!({ "name": name }), TICK)
}

fn spec() -> Spec {
    let (gated, _starts) = Gated::open();
    Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 4), 0)
}

/// Collects `queue.schedule.fired` instants of `name` for `window`.
async fn fired_instants(
    events: &mut a3s_lane::EventStream,
    name: &str,
    window: Duration,
) -> Vec<(u64, u64)> {
    fired_since(events, name, window, 0).await
}

/// [`fired_instants`] published after `since_ms` (an instant fired just before a pause
/// or a removal returned is still read afterwards).
async fn fired_since(
    events: &mut a3s_lane::EventStream,
    name: &str,
    window: Duration,
    since_ms: u64,
) -> Vec<(u64, u64)> {
    let mut fired = Vec::new();
    let until = tokio::time::Instant::now() + window;
    while let Ok(Some(event)) = tokio::time::timeout_at(until, events.recv())
        .await
        .map(Result::ok)
    {
        if event.key == event_keys::SCHEDULE_FIRED
            && event.payload["schedule"] == json!(name)
            && event.timestamp > since_ms
        {
            fired.push((
                event.payload["instant_ms"].as_u64().unwrap(),
                event.payload["command_id"].as_u64().unwrap(),
            ));
        }
    }
    fired
}

async fn a_schedule_fires_each_instant_once(engine: Engine) {
    let mut queue = Harness::open(engine, spec()).await;
    queue.start().await;
    let mut events = queue.client().subscribe();
    let info = queue.client().put_schedule(ticking("tick")).await.unwrap();
    let first = info
        .next_fire_at_ms
        .expect("an interval always has a next instant");
    assert_eq!(
        first % TICK.as_millis() as u64,
        0,
        "instants are multiples of the interval"
    );
    let fired = fired_instants(&mut events, "tick", Duration::from_millis(1700)).await;
    assert!(
        fired.len() >= 3,
        "about 5 instants in 1.7 s, fired {fired:?}"
    );
    let instants: Vec<u64> = fired.iter().map(|(instant, _)| *instant).collect();
    assert!(
        instants
            .windows(2)
            .all(|w| w[1] - w[0] == TICK.as_millis() as u64),
        "each instant once, in order, none skipped: {instants:?}"
    );
    let ids: HashSet<u64> = fired.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), fired.len(), "one command per instant");
    // Each instant's command ran.
    for (_, id) in &fired {
        let status = within("the instant's command", async {
            loop {
                if let Some(status) = queue.client().command(*id).await.unwrap()
                    && status.state.is_final()
                {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert_eq!(status.result, Some(json!({ "name": "tick" })));
    }
    assert!(queue.client().remove_schedule("tick").await.unwrap());
    let removed_at = now_ms();
    let info = queue.client().schedules().await.unwrap();
    assert!(info.is_empty(), "{info:?}");
    let after = fired_since(&mut events, "tick", Duration::from_millis(700), removed_at).await;
    assert!(after.is_empty(), "a removed schedule fired {after:?}");
}

async fn schedules_are_put_listed_paused_resumed_and_removed(engine: Engine) {
    let mut queue = Harness::open(engine, spec()).await;
    queue.start().await;
    let client = queue.client();
    let mut events = client.subscribe();
    client
        .put_schedule(Schedule::cron(
            "nightly",
            "jobs",
            "job",
            json!(1),
            "0 3 * * *",
            "Europe/Berlin",
        ))
        .await
        .unwrap();
    client.put_schedule(ticking("tick")).await.unwrap();
    let listed = client.schedules().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|i| i.schedule.name.as_str()).collect();
    assert_eq!(names, ["nightly", "tick"], "by name");
    let nightly = &listed[0];
    assert_eq!(nightly.schedule.lane, "jobs");
    assert!(!nightly.paused);
    let next = nightly.next_fire_at_ms.unwrap();
    // 03:00 in Berlin is 01:00 or 02:00 UTC.
    let hour_utc = next / 3_600_000 % 24;
    assert!(matches!(hour_utc, 1 | 2), "next {next} is not 03:00 Berlin");
    // Replacing keeps the name, changes what it does.
    let replaced = client
        .put_schedule(Schedule::cron(
            "nightly",
            "jobs",
            "job",
            json!(2),
            "0 4 * * *",
            "UTC",
        ))
        .await
        .unwrap();
    assert_eq!(replaced.schedule.payload, json!(2));
    assert_eq!(replaced.next_fire_at_ms.unwrap() / 3_600_000 % 24, 4);
    assert_eq!(client.schedules().await.unwrap().len(), 2);
    // Paused, it fires nothing.
    client.pause_schedule("tick").await.unwrap();
    let paused_at = now_ms();
    assert!(client.schedules().await.unwrap()[1].paused);
    let while_paused =
        fired_since(&mut events, "tick", Duration::from_millis(800), paused_at).await;
    assert!(
        while_paused.is_empty(),
        "a paused schedule fired {while_paused:?}"
    );
    client.resume_schedule("tick").await.unwrap();
    let resumed = fired_instants(&mut events, "tick", Duration::from_millis(800)).await;
    assert!(!resumed.is_empty(), "a resumed schedule fires again");
    assert!(client.remove_schedule("nightly").await.unwrap());
    assert!(
        !client.remove_schedule("nightly").await.unwrap(),
        "already gone"
    );
    assert!(client.remove_schedule("tick").await.unwrap());
}

async fn bad_schedules_are_refused_at_the_boundary(engine: Engine) {
    let queue = Harness::open(engine, spec()).await;
    let client = queue.client();
    let cases = [
        (
            Schedule::cron("x", "jobs", "job", json!(1), "61 * * * *", "UTC"),
            "does not parse",
        ),
        (
            Schedule::cron("x", "jobs", "job", json!(1), "0 3 * * *", "Mars/Olympus"),
            "unknown time zone",
        ),
        (
            Schedule::every("", "jobs", "job", json!(1), TICK),
            "1 to 200 bytes",
        ),
        (
            Schedule::every("x", "jobs", "job", json!(1), Duration::ZERO),
            "interval of 0",
        ),
    ];
    for (schedule, says) in cases {
        let error = client.put_schedule(schedule).await.unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)), "{error}");
        assert!(
            error.to_string().contains(says),
            "{error} should say {says}"
        );
    }
    let error = client
        .put_schedule(Schedule::every("x", "nowhere", "job", json!(1), TICK))
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::LaneNotFound { .. }), "{error}");
    let error = client.pause_schedule("missing").await.unwrap_err();
    assert!(
        error.to_string().contains("no schedule named 'missing'"),
        "{error}"
    );
    assert!(
        client.schedules().await.unwrap().is_empty(),
        "nothing was put"
    );
}

async fn a_schedule_is_kept_across_a_restart(engine: Engine) {
    let mut queue = Harness::open(engine, spec()).await;
    queue.start().await;
    queue.client().put_schedule(ticking("tick")).await.unwrap();
    queue.restart().await;
    let listed = queue.client().schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].schedule, ticking("tick"));
    let mut events = queue.client().subscribe();
    queue.start().await;
    let fired = fired_instants(&mut events, "tick", Duration::from_millis(1000)).await;
    assert!(!fired.is_empty(), "it fires after the restart");
    assert!(queue.client().remove_schedule("tick").await.unwrap());
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
