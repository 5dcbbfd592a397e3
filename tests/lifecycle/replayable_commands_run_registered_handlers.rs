//! Replayable commands: a type name plus a JSON payload, run by the registered handler.

use a3s_lane::{CommandContext, LaneConfig, LaneError, handler_fn};
use serde_json::{Value, json};

use crate::support::{self, builder};

#[tokio::test]
async fn a_replayable_command_runs_with_its_payload_and_context() {
    let manager = builder(&[("query", LaneConfig::new(1, 4), 2)])
        .with_handler(
            "fetch_data",
            handler_fn(|payload: Value, ctx: CommandContext| async move {
                Ok(json!({ "url": payload["url"], "attempt": ctx.attempt(), "lane": ctx.lane() }))
            }),
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let handle = manager
        .submit_replayable(
            "query",
            "fetch_data",
            json!({ "url": "https://example.com" }),
        )
        .await
        .unwrap();
    assert_eq!(
        handle.await.unwrap(),
        json!({ "url": "https://example.com", "attempt": 1, "lane": "query" })
    );
}

#[tokio::test]
async fn an_unknown_command_type_is_rejected_at_submit_naming_the_registered_ones() {
    let manager = builder(&[("query", LaneConfig::new(1, 4), 2)])
        .build()
        .await
        .unwrap();
    manager.register_handler("b_type", handler_fn(|p: Value, _| async move { Ok(p) }));
    manager.register_handler("a_type", handler_fn(|p: Value, _| async move { Ok(p) }));
    let error = manager
        .submit_replayable("query", "c_type", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        LaneError::HandlerNotFound {
            command_type: "c_type".into(),
            registered: "a_type, b_type".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "no handler registered for command type 'c_type'; registered: a_type, b_type"
    );
}

#[tokio::test]
async fn a_command_reads_its_context_through_the_task_local() {
    struct WhoAmI;
    #[async_trait::async_trait]
    impl a3s_lane::Command for WhoAmI {
        async fn execute(&self) -> a3s_lane::Result<Value> {
            let ctx = CommandContext::current().expect("running inside the queue");
            Ok(json!({ "id": ctx.id(), "cancelled": ctx.is_cancelled() }))
        }
        fn command_type(&self) -> &str {
            "whoami"
        }
    }
    let manager = support::started(&[("q", LaneConfig::new(1, 1), 0)]).await;
    let handle = manager
        .submit_with_handle("q", Box::new(WhoAmI))
        .await
        .unwrap();
    let id = handle.id();
    assert_eq!(
        handle.await.unwrap(),
        json!({ "id": id, "cancelled": false })
    );
    assert!(CommandContext::current().is_none());
}
