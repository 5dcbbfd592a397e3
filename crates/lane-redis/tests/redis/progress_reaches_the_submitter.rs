//! Progress a handler reports on a Redis worker reaches the process that submitted the
//! command: as `queue.command.progress` events and through the command's handle.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{HandlerRegistry, LaneConfig, RedisWorker, RedisWorkerConfig, handler_fn};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::support::TestQueue;

fn config(slots: usize) -> RedisWorkerConfig {
    RedisWorkerConfig::new(slots)
        .with_lease_ttl(Duration::from_secs(5))
        .with_block_timeout(Duration::from_secs(1))
}

/// Awaits `future`, failing instead of hanging.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("gave up after a minute waiting for {what}"))
}

/// A handler that reports `steps` progress values, each after the test allows it.
fn stepping_handlers(gate: Arc<Semaphore>) -> HandlerRegistry {
    let handlers = HandlerRegistry::default();
    handlers.register(
        "steps",
        handler_fn(move |payload, ctx| {
            let gate = gate.clone();
            async move {
                let steps = payload["steps"].as_u64().unwrap();
                for step in 1..=steps {
                    gate.acquire().await.unwrap().forget();
                    ctx.report_progress(json!({ "who": payload["who"], "step": step }));
                }
                gate.acquire().await.unwrap().forget();
                Ok(json!("done"))
            }
        }),
    );
    handlers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_from_a_worker_reaches_the_producers_events_in_order() {
    let test = TestQueue::connect("progress-events", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
    })
    .await;
    let gate = Arc::new(Semaphore::new(0));
    let worker = RedisWorker::start(&test.queue, stepping_handlers(gate.clone()), config(2))
        .await
        .unwrap();
    let mut events = test.queue.subscribe();
    let handle = test
        .queue
        .submit("jobs", "steps", json!({"who": "a", "steps": 5}))
        .await
        .unwrap();
    let id = handle.id();
    for step in 1..=5 {
        gate.add_permits(1);
        let event = next_progress(&mut events).await;
        assert_eq!(
            event.payload,
            json!({"lane_id": "jobs", "command_id": id, "progress": {"who": "a", "step": step}})
        );
    }
    gate.add_permits(1);
    assert_eq!(within("the result", handle).await.unwrap(), json!("done"));
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_sees_its_own_latest_progress() {
    let test = TestQueue::connect("progress-handle", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
    })
    .await;
    let gate_a = Arc::new(Semaphore::new(0));
    let gate_b = Arc::new(Semaphore::new(0));
    let handlers = stepping_handlers(gate_a.clone());
    let other = stepping_handlers(gate_b.clone());
    handlers.register_arc("steps_b", other.get("steps").unwrap());
    let worker = RedisWorker::start(&test.queue, handlers, config(2))
        .await
        .unwrap();
    let a = test
        .queue
        .submit("jobs", "steps", json!({"who": "a", "steps": 2}))
        .await
        .unwrap();
    let b = test
        .queue
        .submit("jobs", "steps_b", json!({"who": "b", "steps": 1}))
        .await
        .unwrap();
    let mut progress_a = a.progress();
    let mut progress_b = b.progress();
    assert_eq!(*progress_a.borrow(), None, "nothing reported yet");

    gate_b.add_permits(1);
    within("b's progress", progress_b.changed()).await.unwrap();
    assert_eq!(
        *progress_b.borrow_and_update(),
        Some(json!({"who": "b", "step": 1}))
    );
    assert_eq!(*progress_a.borrow(), None, "b's progress is not a's");

    gate_a.add_permits(1);
    within("a's first progress", progress_a.changed())
        .await
        .unwrap();
    assert_eq!(
        *progress_a.borrow_and_update(),
        Some(json!({"who": "a", "step": 1}))
    );
    gate_a.add_permits(1);
    within("a's second progress", progress_a.changed())
        .await
        .unwrap();
    assert_eq!(
        *progress_a.borrow_and_update(),
        Some(json!({"who": "a", "step": 2}))
    );

    gate_a.add_permits(1);
    gate_b.add_permits(1);
    assert_eq!(within("a's result", a).await.unwrap(), json!("done"));
    assert_eq!(within("b's result", b).await.unwrap(), json!("done"));
    // The command finished: its progress stays at the last value and changes no more.
    assert!(progress_a.changed().await.is_err());
    assert_eq!(*progress_a.borrow(), Some(json!({"who": "a", "step": 2})));
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_reporters_last_progress_arrives_before_its_result_and_in_order() {
    let test = TestQueue::connect("progress-fast", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
    })
    .await;
    let handlers = HandlerRegistry::default();
    handlers.register(
        "fast",
        handler_fn(|payload, ctx| async move {
            // No await between reports: most are replaced before they leave the worker.
            for n in 0..payload["reports"].as_u64().unwrap() {
                ctx.report_progress(json!(n));
            }
            Ok(json!("done"))
        }),
    );
    let worker = RedisWorker::start(&test.queue, handlers, config(2))
        .await
        .unwrap();
    let mut events = test.queue.subscribe();
    // Fewer reports than the event buffer holds, so no subscriber lag hides any.
    let handle = test
        .queue
        .submit("jobs", "fast", json!({"reports": 500}))
        .await
        .unwrap();
    let id = handle.id();
    let progress = handle.progress();
    assert_eq!(within("the result", handle).await.unwrap(), json!("done"));
    assert_eq!(
        *progress.borrow(),
        Some(json!(499)),
        "the last report arrived before the result"
    );
    // Every report left the worker before the result: the subscriber gets them all, in
    // order, from the queue's event stream.
    let mut seen = Vec::new();
    while seen.last() != Some(&json!(499)) {
        let event = next_progress(&mut events).await;
        assert_eq!(event.command_id(), Some(id));
        seen.push(event.payload["progress"].clone());
    }
    let numbers: Vec<u64> = seen.iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "progress arrives in order: {numbers:?}"
    );
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}

/// The next progress event of `events` (lifecycle events of the commands pass by).
async fn next_progress(events: &mut a3s_lane::EventStream) -> a3s_lane::LaneEvent {
    loop {
        let event = within("a progress event", events.recv()).await.unwrap();
        if event.key == "queue.command.progress" {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_command_whose_handle_was_dropped_still_reaches_subscribers() {
    let test = TestQueue::connect("progress-dropped", |c| {
        c.with_lane("jobs", LaneConfig::new(1, 4), 0)
    })
    .await;
    let gate = Arc::new(Semaphore::new(0));
    let worker = RedisWorker::start(&test.queue, stepping_handlers(gate.clone()), config(1))
        .await
        .unwrap();
    let mut events = test.queue.subscribe();
    let dropped = test
        .queue
        .submit("jobs", "steps", json!({"who": "dropped", "steps": 1}))
        .await
        .unwrap();
    let dropped_progress = dropped.progress();
    drop(dropped);
    let kept = test
        .queue
        .submit("jobs", "steps", json!({"who": "kept", "steps": 1}))
        .await
        .unwrap();
    // One slot: the dropped command reports and finishes before the kept one starts.
    // Subscribers see every command's progress; the dropped handle's watch sees nothing.
    gate.add_permits(4);
    let event = next_progress(&mut events).await;
    assert_eq!(
        event.payload["progress"],
        json!({"who": "dropped", "step": 1})
    );
    let event = next_progress(&mut events).await;
    assert_eq!(event.payload["progress"], json!({"who": "kept", "step": 1}));
    assert_eq!(
        within("the result", kept).await.unwrap(),
        Value::from("done")
    );
    assert_eq!(*dropped_progress.borrow(), None);
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
}
