//! The motivating case: control commands never wait behind prompt commands.

use std::sync::Arc;

use a3s_lane::{EventEmitter, QueueManagerBuilder};
use tokio::sync::Semaphore;

use crate::support::{self, Log, Probe, settle};

#[tokio::test]
async fn control_starts_immediately_while_prompt_is_saturated_with_a_backlog() {
    let log = Log::default();
    let generating = Arc::new(Semaphore::new(0));
    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        .with_default_lanes()
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let mut prompts = Vec::new();
    for i in 0..50 {
        prompts.push(
            manager
                .submit(
                    "prompt",
                    Probe::gated(format!("prompt-{i}"), &log, &generating),
                )
                .await
                .unwrap(),
        );
    }
    settle().await;
    assert_eq!(manager.stats().await.lanes["prompt"].active, 2);
    let control = manager
        .submit("control", Probe::new("pause", &log))
        .await
        .unwrap();
    assert_eq!(control.await.unwrap().unwrap(), "pause");
    assert_eq!(log.entries(), ["prompt-0", "prompt-1", "pause"]);
    assert_eq!(manager.stats().await.lanes["prompt"].pending, 48);
    generating.add_permits(1000);
    for rx in prompts {
        rx.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_a_running_prompt_that_ignores_the_signal() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(64))
        .with_default_lanes()
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let generation = manager
        .submit_with_handle(
            "prompt",
            Box::new(support::Sleep(std::time::Duration::from_secs(3600))),
        )
        .await
        .unwrap();
    settle().await;
    assert_eq!(manager.stats().await.lanes["prompt"].active, 1);
    let started = tokio::time::Instant::now();
    assert!(manager.cancel(generation.id()));
    let error = generation.await.unwrap_err();
    assert!(error.is_cancelled(), "{error}");
    assert!(
        error.to_string().contains("dropped after the grace period"),
        "{error}"
    );
    assert_eq!(started.elapsed(), a3s_lane::DEFAULT_CANCEL_GRACE);
    assert_eq!(manager.stats().await.lanes["prompt"].active, 0);
}
