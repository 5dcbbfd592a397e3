//! Recurring schedules and a command's result afterwards, in process (the same calls work
//! on a `RedisQueue`, since both are a `QueueClient`): a schedule every second, a nightly
//! cron schedule in Berlin time, and the fired commands looked up once they ran.
//!
//! Run: `cargo run --example scheduling`

use std::time::Duration;

use a3s_lane::{
    CommandContext, CommandState, EventEmitter, LaneConfig, Missed, Page, QueueClient,
    QueueManagerBuilder, Retention, Schedule, event_keys, handler_fn,
};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        // Keep the last 100 commands of each final state, for an hour.
        .with_lane(
            "maintenance",
            LaneConfig::new(1, 2).with_retention(Retention::new(100, Duration::from_secs(3600))),
            0,
        )
        .with_handler(
            "sweep",
            handler_fn(|payload: Value, _ctx: CommandContext| async move {
                Ok(json!({ "swept": payload["table"] }))
            }),
        )
        .build()
        .await?;
    manager.start().await?;
    let mut events = manager.subscribe();

    manager
        .put_schedule(Schedule::every(
            "sweep-sessions",
            "maintenance",
            "sweep",
            json!({ "table": "sessions" }),
            Duration::from_secs(1),
        ))
        .await?;
    manager
        .put_schedule(
            Schedule::cron(
                "nightly-vacuum",
                "maintenance",
                "sweep",
                json!({ "table": "everything" }),
                "30 2 * * *",
                "Europe/Berlin",
            )
            .with_missed(Missed::RunOnce)
            .with_jitter(Duration::from_secs(60)),
        )
        .await?;
    for info in manager.schedules().await? {
        println!(
            "schedule {:<15} next at {} ms since the epoch",
            info.schedule.name,
            info.next_fire_at_ms.unwrap_or_default()
        );
    }

    // Three instants of the every-second schedule.
    let mut fired = Vec::new();
    while fired.len() < 3 {
        let event = events.recv().await?;
        if event.key == event_keys::SCHEDULE_FIRED {
            println!(
                "fired {} at instant {} as command {}",
                event.payload["schedule"], event.payload["instant_ms"], event.payload["command_id"]
            );
            fired.push(event.payload["command_id"].as_u64().unwrap_or_default());
        }
    }
    manager.pause_schedule("sweep-sessions").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Each fired command, looked up afterwards with its result.
    for id in fired {
        if let Some(status) = manager.command(id).await? {
            println!(
                "command {id}: {:?}, result {:?}",
                status.state, status.result
            );
        }
    }
    let done = manager
        .list_commands("maintenance", CommandState::Completed, Page::first(10))
        .await?;
    println!("{} completed commands kept in the lane", done.len());
    manager.remove_schedule("sweep-sessions").await?;
    manager.shutdown().await;
    Ok(())
}
