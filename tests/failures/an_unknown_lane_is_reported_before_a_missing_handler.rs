//! A submit to an unknown lane reports the unknown lane first, before a missing handler:
//! with or without storage, through `submit_replayable`, `submit_replayable_with` and
//! `QueueClient::submit`. (The Python and Node SDKs have a test of the same name.)

use a3s_lane::{
    CommandContext, LaneConfig, LaneError, QueueClient, QueueManager, SubmitOptions, handler_fn,
};
use serde_json::{Value, json};

use crate::support::{one_lane, storage};

async fn check(manager: &QueueManager) {
    let lane_not_found = |error: LaneError| {
        assert!(
            matches!(&error, LaneError::LaneNotFound { lane, .. } if lane == "nowhere"),
            "{error:?}"
        );
    };
    lane_not_found(
        manager
            .submit_replayable("nowhere", "unregistered", json!(1))
            .await
            .unwrap_err(),
    );
    lane_not_found(
        manager
            .submit_replayable_with("nowhere", "unregistered", json!(2), &SubmitOptions::new())
            .await
            .unwrap_err(),
    );
    lane_not_found(
        QueueClient::submit(manager, "nowhere", "unregistered", json!(3))
            .await
            .unwrap_err(),
    );
    lane_not_found(
        manager
            .submit_replayable("nowhere", "known", json!(4))
            .await
            .unwrap_err(),
    );
    let missing = manager
        .submit_replayable("work", "unregistered", json!(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, LaneError::HandlerNotFound { command_type, .. } if command_type == "unregistered"),
        "{missing:?}"
    );
    let handle = manager
        .submit_replayable("work", "known", json!(6))
        .await
        .unwrap();
    assert_eq!(handle.await.unwrap(), json!(6));
}

fn known() -> impl a3s_lane::Handler {
    handler_fn(|payload: Value, _ctx: CommandContext| async move { Ok(payload) })
}

#[tokio::test]
async fn without_storage() {
    let manager = one_lane(LaneConfig::new(1, 2))
        .with_handler("known", known())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    check(&manager).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_storage_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let manager = one_lane(LaneConfig::new(1, 2))
        .with_storage(storage(dir.path()).await)
        .with_dlq(10)
        .with_handler("known", known())
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    check(&manager).await;
}
