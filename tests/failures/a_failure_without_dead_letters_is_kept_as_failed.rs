//! On a queue without dead letters, a command that failed for good is kept by its lane's
//! retention as `failed`, with its error, and listed under that state; a hard stop keeps
//! nothing (the command runs again at the next start).

use std::time::Duration;

use a3s_lane::{
    CommandState, EventEmitter, LaneConfig, LaneError, Page, QueueClient, QueueManagerBuilder,
    Retention, handler_fn,
};
use serde_json::{Value, json};

#[tokio::test]
async fn a_failure_without_dead_letters_is_kept_as_failed() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "jobs",
            LaneConfig::new(1, 1).with_retention(Retention::new(10, Duration::from_secs(60))),
            0,
        )
        .with_handler(
            "broken",
            handler_fn(|_payload: Value, _ctx: a3s_lane::CommandContext| async {
                Err(LaneError::NonRetryable("the printer is on fire".into()))
            }),
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let submitted = QueueClient::submit(&manager, "jobs", "broken", json!(1))
        .await
        .unwrap();
    let id = submitted.id();
    assert!(submitted.await.is_err());
    let status = manager.command(id).await.unwrap().expect("kept");
    assert_eq!(status.state, CommandState::Failed);
    assert!(status.state.is_final());
    let error = status.error.clone().unwrap();
    assert_eq!(error.kind, "non_retryable");
    assert!(error.message.contains("on fire"), "{error:?}");
    assert!(matches!(
        status.outcome(),
        Some(Err(LaneError::NonRetryable(_)))
    ));
    let failed = manager
        .list_commands("jobs", CommandState::Failed, Page::default())
        .await
        .unwrap();
    assert_eq!(failed.iter().map(|s| s.id).collect::<Vec<_>>(), [id]);
    let dead = manager
        .list_commands("jobs", CommandState::DeadLettered, Page::default())
        .await
        .unwrap();
    assert!(dead.is_empty(), "no dead letters on this queue");
}

#[test]
fn states_read_back_from_their_names() {
    for state in CommandState::ALL {
        assert_eq!(state.as_str().parse::<CommandState>().unwrap(), state);
    }
    let error = "finished".parse::<CommandState>().unwrap_err();
    assert!(error.to_string().contains("dead_lettered"), "{error}");
}
