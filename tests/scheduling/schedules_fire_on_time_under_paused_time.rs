//! Recurring schedules in process, timed with paused tokio time: a cron schedule fires
//! each of its instants once, on time, over simulated hours; an interval schedule with
//! jitter delays each instant's command by its jitter; a paused schedule skips, and on
//! resume reports what it skipped.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, QueueClient, QueueManager, QueueManagerBuilder,
    Schedule, event_keys, handler_fn,
};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Each run's command id and start (tokio time).
type Runs = Arc<Mutex<Vec<(u64, tokio::time::Instant)>>>;

async fn manager(ran: Runs) -> QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(4096))
        .with_lane("jobs", LaneConfig::new(1, 4), 0)
        .with_handler(
            "job",
            handler_fn(move |payload: Value, ctx: CommandContext| {
                let ran = ran.clone();
                async move {
                    ran.lock().push((ctx.id(), tokio::time::Instant::now()));
                    Ok(payload)
                }
            }),
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    manager
}

/// The events already published on `events`.
async fn drain(events: &mut a3s_lane::EventStream) -> Vec<a3s_lane::LaneEvent> {
    let mut seen = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::ZERO, events.recv()).await {
        seen.push(event);
    }
    seen
}

/// Fired instants seen so far on `events`.
async fn drain_fired(events: &mut a3s_lane::EventStream) -> Vec<u64> {
    drain(events)
        .await
        .into_iter()
        .filter(|event| event.key == event_keys::SCHEDULE_FIRED)
        .map(|event| event.payload["instant_ms"].as_u64().unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_cron_schedule_fires_each_instant_once_over_simulated_hours() {
    let ran: Runs = Arc::new(Mutex::new(Vec::new()));
    let manager = manager(ran.clone()).await;
    let mut events = manager.subscribe();
    let info = manager
        .put_schedule(Schedule::cron(
            "quarter",
            "jobs",
            "job",
            json!(1),
            "*/15 * * * *",
            "UTC",
        ))
        .await
        .unwrap();
    let first = info.next_fire_at_ms.unwrap();
    assert_eq!(first % 900_000, 0, "on a quarter hour");
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    let fired = drain_fired(&mut events).await;
    assert_eq!(fired.len(), 8, "8 quarter hours in 2 h: {fired:?}");
    assert_eq!(fired[0], first);
    assert!(
        fired.windows(2).all(|w| w[1] - w[0] == 900_000),
        "{fired:?}"
    );
    assert_eq!(ran.lock().len(), 8, "each instant's command ran once");
    let info = &manager.schedules().await.unwrap()[0];
    assert_eq!((info.fired, info.skipped), (8, 0));
    assert_eq!(info.last_fired_at_ms, fired.last().copied());
    assert_eq!(info.next_fire_at_ms, Some(fired[7] + 900_000));
}

#[tokio::test(start_paused = true)]
async fn a_paused_schedule_skips_and_reports_it_on_resume() {
    let ran: Runs = Arc::new(Mutex::new(Vec::new()));
    let manager = manager(ran.clone()).await;
    let mut events = manager.subscribe();
    manager
        .put_schedule(Schedule::every(
            "minutely",
            "jobs",
            "job",
            json!(1),
            Duration::from_secs(60),
        ))
        .await
        .unwrap();
    manager.pause_schedule("minutely").await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(
        drain_fired(&mut events).await.is_empty(),
        "paused: nothing fires"
    );
    manager.resume_schedule("minutely").await.unwrap();
    let mut skipped = None;
    for event in drain(&mut events).await {
        if event.key == event_keys::SCHEDULE_SKIPPED {
            skipped = Some(event.payload.clone());
        }
    }
    let skipped = skipped.expect("the resume reports the skipped instants");
    assert_eq!(skipped["reason"], json!("paused"));
    let span = skipped["until_ms"].as_u64().unwrap() - skipped["from_ms"].as_u64().unwrap();
    assert!(span >= 8 * 60_000, "about 10 minutes skipped: {skipped}");
    tokio::time::sleep(Duration::from_secs(180)).await;
    assert_eq!(
        drain_fired(&mut events).await.len(),
        3,
        "fires again after the resume"
    );
    let info = &manager.schedules().await.unwrap()[0];
    assert_eq!((info.fired, info.skipped), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_instants_command_by_its_share() {
    let ran: Runs = Arc::new(Mutex::new(Vec::new()));
    let manager = manager(ran.clone()).await;
    let schedule = Schedule::every("spread", "jobs", "job", json!(1), Duration::from_secs(60))
        .with_jitter(Duration::from_secs(30));
    let mut events = manager.subscribe();
    // The schedule's clock starts at the first put: wall time then, plus tokio time since.
    let (t0, w0) = (tokio::time::Instant::now(), wall_ms());
    manager.put_schedule(schedule.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    let mut fired = Vec::new();
    for event in drain(&mut events).await {
        if event.key == event_keys::SCHEDULE_FIRED {
            fired.push((
                event.payload["instant_ms"].as_u64().unwrap(),
                event.payload["command_id"].as_u64().unwrap(),
            ));
        }
    }
    assert!(fired.len() >= 9, "{fired:?}");
    // The last instants' commands may still wait out their jitter: let them start.
    tokio::time::sleep(Duration::from_secs(31)).await;
    for (instant, id) in fired {
        let started = ran
            .lock()
            .iter()
            .find(|(run, _)| *run == id)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("instant {instant}: command {id} never started"));
        let started = w0 + started.duration_since(t0).as_millis() as u64;
        let due = instant + schedule.jitter_for(instant).as_millis() as u64;
        // Paused time: on the ms, give or take the clocks' rounding.
        assert!(
            started.abs_diff(due) <= 5,
            "instant {instant}: due {due}, started {started}"
        );
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
