//! Progress a handler reports, seen by a subscriber of the queue.

use a3s_lane::{CommandContext, LaneConfig, event_keys, handler_fn};
use serde_json::{Value, json};

use crate::engine::{Engine, Harness, Spec};
use crate::{conformance, registry, within};

conformance!(progress_reports_reach_a_subscriber_in_order_before_the_result);

async fn progress_reports_reach_a_subscriber_in_order_before_the_result(engine: Engine) {
    let reporter = handler_fn(|_payload: Value, ctx: CommandContext| async move {
        for step in 1..=3 {
            ctx.report_progress(json!({ "step": step }));
            // Let each report leave before the next replaces it (Redis keeps the newest
            // unsent one per run).
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        Ok(json!("done"))
    });
    let spec = Spec::new(registry("report", reporter)).lane("jobs", LaneConfig::new(1, 2), 0);
    let mut queue = Harness::open(engine, spec).await;
    let mut events = queue.client().subscribe();
    queue.start().await;
    let handle = queue
        .client()
        .submit("jobs", "report", json!({}))
        .await
        .unwrap();
    let id = handle.id();
    assert_eq!(within("the result", handle).await.unwrap(), json!("done"));
    // Every report was delivered before the result, so they are all waiting now.
    let mut steps = Vec::new();
    while steps.len() < 3 {
        let event = within("a progress event", events.recv()).await.unwrap();
        if event.key == event_keys::COMMAND_PROGRESS {
            assert_eq!(event.payload["command_id"], json!(id));
            assert_eq!(event.payload["lane_id"], json!("jobs"));
            steps.push(event.payload["progress"]["step"].as_u64().unwrap());
        }
    }
    assert_eq!(steps, [1, 2, 3]);
}

conformance!(lifecycle_events_of_every_command_reach_any_subscriber);

/// A subscriber on another client of the queue (another process, on Redis) sees each
/// command's life: submitted, started, completed; retry, failure and dead letter;
/// cancelled while pending.
async fn lifecycle_events_of_every_command_reach_any_subscriber(engine: Engine) {
    use a3s_lane::{LaneError, RetryPolicy};
    use std::time::Duration;

    let handlers = registry(
        "ok",
        handler_fn(|payload: Value, _ctx: CommandContext| async move { Ok(payload) }),
    );
    handlers.register(
        "fails",
        handler_fn(|_payload: Value, _ctx: CommandContext| async move {
            Err::<Value, _>(LaneError::CommandError("nope".into()))
        }),
    );
    let spec = Spec::new(handlers)
        .lane(
            "jobs",
            LaneConfig::new(1, 1)
                .with_retry_policy(RetryPolicy::fixed(1, Duration::from_millis(10))),
            0,
        )
        .lane("parked", LaneConfig::new(1, 1), 1);
    let mut queue = Harness::open(engine, spec).await;
    let observer = queue.another_client().await;
    let mut events = observer.subscribe();
    queue.start().await;
    let client = queue.client();
    let ok = client.submit("jobs", "ok", json!(1)).await.unwrap();
    let ok_id = ok.id();
    within("the ok result", ok).await.unwrap();
    let fails = client.submit("jobs", "fails", json!(2)).await.unwrap();
    let fails_id = fails.id();
    assert!(within("the failure", fails).await.is_err());
    client.pause_lane("parked").await.unwrap();
    let parked = client.submit("parked", "ok", json!(3)).await.unwrap();
    let parked_id = parked.id();
    client.cancel(parked_id).await.unwrap();

    let expected = [
        (ok_id, event_keys::COMMAND_SUBMITTED),
        (ok_id, event_keys::COMMAND_STARTED),
        (ok_id, event_keys::COMMAND_COMPLETED),
        (fails_id, event_keys::COMMAND_SUBMITTED),
        (fails_id, event_keys::COMMAND_STARTED),
        (fails_id, event_keys::COMMAND_RETRY),
        (fails_id, event_keys::COMMAND_STARTED),
        (fails_id, event_keys::COMMAND_FAILED),
        (fails_id, event_keys::COMMAND_DEAD_LETTERED),
        (parked_id, event_keys::COMMAND_SUBMITTED),
        (parked_id, event_keys::COMMAND_CANCELLED),
    ];
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = within("a lifecycle event", events.recv()).await.unwrap();
        let Some(id) = event.payload["command_id"].as_u64() else {
            continue;
        };
        if event.key == event_keys::COMMAND_CANCELLED {
            assert_eq!(event.payload["was_running"], json!(false));
        }
        if event.key == event_keys::COMMAND_STARTED {
            assert!(event.payload["attempt"].as_u64().is_some(), "{event:?}");
        }
        seen.push((id, event.key.clone()));
    }
    let expected: Vec<(u64, String)> = expected
        .iter()
        .map(|(id, key)| (*id, (*key).to_owned()))
        .collect();
    assert_eq!(seen, expected);
}
