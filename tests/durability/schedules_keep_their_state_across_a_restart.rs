//! Recurring schedules with `LocalStorage`: a restarted queue has its schedules as they
//! stood — paused or not, their counts, their last instant and that instant's command
//! in the store — and a schedule the store cannot read back stops the queue from
//! starting (with what to do) rather than silently never firing again.

use std::time::Duration;

use a3s_lane::{
    CommandContext, LaneConfig, LocalStorage, QueueClient, Retention, Schedule, handler_fn,
};
use serde_json::{Value, json};

use crate::support::{one_lane, stop_and_drain, storage};

/// A lane that keeps its finished commands, so that each instant's command can be found.
fn keeping() -> LaneConfig {
    LaneConfig::new(1, 4).with_retention(Retention::new(1000, Duration::from_secs(3600)))
}

fn echo() -> impl a3s_lane::Handler {
    handler_fn(|payload: Value, _ctx: CommandContext| async move { Ok(payload) })
}

fn tick() -> Schedule {
    Schedule::every(
        "tick",
        "work",
        "job",
        json!({ "schedule": "tick" }),
        Duration::from_millis(100),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_comes_back_paused_with_its_counts_and_last_instant() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = storage(dir.path()).await;
        let manager = one_lane(keeping())
            .with_storage(store.clone())
            .with_handler("job", echo())
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();
        manager.put_schedule(tick()).await.unwrap();
        manager
            .put_schedule(Schedule::cron(
                "nightly",
                "work",
                "job",
                json!(1),
                "0 3 * * *",
                "Europe/Berlin",
            ))
            .await
            .unwrap();
        // A few instants fire, then it is paused.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while manager.schedules().await.unwrap()[1].fired < 2 {
            assert!(tokio::time::Instant::now() < deadline, "tick never fired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        manager.pause_schedule("tick").await.unwrap();
        let before = manager.schedules().await.unwrap();
        assert_eq!(store.load_schedules().await.unwrap(), before, "durable");
        stop_and_drain(&manager).await;
        before
    };
    let tick_before = &before[1];
    assert!(
        tick_before.paused && tick_before.fired >= 2,
        "{tick_before:?}"
    );

    let store = storage(dir.path()).await;
    let manager = one_lane(keeping())
        .with_storage(store.clone())
        .with_handler("job", echo())
        .build()
        .await
        .unwrap();
    assert_eq!(manager.schedules().await.unwrap(), before, "as they stood");
    manager.start().await.unwrap();
    // The last instant's command was stored with the schedule: it is known.
    let id = tick_before.last_command_id.expect("it fired");
    let status = manager
        .command(id)
        .await
        .unwrap()
        .expect("its command is kept");
    assert_eq!(status.result, Some(json!({ "schedule": "tick" })));
    // Still paused: nothing fires.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        manager.schedules().await.unwrap()[1].fired,
        tick_before.fired
    );
    stop_and_drain(&manager).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_the_store_cannot_read_back_stops_the_queue_from_starting() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    {
        let store = storage(&dir).await;
        let manager = one_lane(keeping())
            .with_storage(store.clone())
            .with_handler("job", echo())
            .build()
            .await
            .unwrap();
        manager.put_schedule(tick()).await.unwrap();
        manager
            .put_schedule(Schedule::every(
                "hourly",
                "work",
                "job",
                json!(2),
                Duration::from_secs(3600),
            ))
            .await
            .unwrap();
    }
    // Let the dropped queue release the store, then damage one row's JSON.
    LocalStorage::new(&dir)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    {
        let conn = rusqlite::Connection::open(dir.join("lane.db")).unwrap();
        conn.execute(
            "UPDATE schedules SET info = '{\"schedule\": 1}' WHERE name = 'hourly'",
            [],
        )
        .unwrap();
    }
    let store = storage(&dir).await;
    let built = one_lane(keeping())
        .with_storage(store)
        .with_handler("job", echo())
        .build()
        .await;
    let Err(error) = built else {
        panic!("a queue without one of its schedules must not start");
    };
    let message = error.to_string();
    for words in ["\"hourly\"", "cannot be read back", "LocalStorage::salvage"] {
        assert!(message.contains(words), "{message}");
    }

    // Salvaged, the readable schedule runs on.
    let salvaged = base.path().join("salvaged");
    LocalStorage::new(&dir)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!(report.schedules, 1, "{report:#?}");
    let manager = one_lane(keeping())
        .with_storage(storage(&salvaged).await)
        .with_handler("job", echo())
        .build()
        .await
        .unwrap();
    let names: Vec<String> = manager
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.schedule.name)
        .collect();
    assert_eq!(names, ["tick"]);
}
