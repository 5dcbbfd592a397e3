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
