//! What happens when a run fails: timeouts, panics, retries by the lane's policy, dead
//! letters, redrive and purge.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use a3s_lane::{
    CommandContext, CommandState, LaneConfig, LaneError, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH,
    RetryPolicy, handler_fn,
};
use serde_json::{Value, json};

use crate::engine::{Engine, Harness, Spec};
use crate::{conformance, failed, registry, within};

conformance!(a_run_longer_than_its_lane_timeout_fails_with_timeout);
conformance!(a_panic_fails_the_command_and_frees_its_slot);
conformance!(failures_retry_by_the_lane_policy_then_become_dead_letters);
conformance!(payloads_past_the_limits_are_refused_at_submit);

async fn a_run_longer_than_its_lane_timeout_fails_with_timeout(engine: Engine) {
    let sleepy = handler_fn(|_payload: Value, _ctx: CommandContext| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Value::Null)
    });
    let spec = Spec::new(registry("sleepy", sleepy)).lane(
        "jobs",
        LaneConfig::new(1, 2).with_timeout(Duration::from_millis(150)),
        0,
    );
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let handle = queue
        .client()
        .submit("jobs", "sleepy", json!({}))
        .await
        .unwrap();
    let error = failed(within("the timeout", handle).await);
    assert_eq!(error, LaneError::Timeout(Duration::from_millis(150)));
}

async fn a_panic_fails_the_command_and_frees_its_slot(engine: Engine) {
    let handlers = registry(
        "panics",
        handler_fn(|_payload: Value, _ctx: CommandContext| async move {
            if true {
                panic!("kaboom");
            }
            Ok(Value::Null)
        }),
    );
    handlers.register(
        "fine",
        handler_fn(|payload: Value, _ctx: CommandContext| async move { Ok(payload) }),
    );
    // One slot: the second command runs only if the panic gave it back.
    let spec = Spec::new(handlers).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let boom = queue
        .client()
        .submit("jobs", "panics", json!({}))
        .await
        .unwrap();
    let fine = queue
        .client()
        .submit("jobs", "fine", json!(7))
        .await
        .unwrap();
    let error = failed(within("the panic", boom).await);
    assert!(
        matches!(&error, LaneError::CommandError(message) if message.contains("command panicked: kaboom")),
        "{error:?}"
    );
    assert_eq!(within("the next command", fine).await.unwrap(), json!(7));
}

/// Two retries, then a dead letter that can be read by id, re-driven once the cause is
/// fixed, and purged.
async fn failures_retry_by_the_lane_policy_then_become_dead_letters(engine: Engine) {
    let attempts = Arc::new(AtomicU32::new(0));
    let healthy = Arc::new(AtomicBool::new(false));
    let (seen, fixed) = (attempts.clone(), healthy.clone());
    let flaky = handler_fn(move |payload: Value, _ctx: CommandContext| {
        let (seen, fixed) = (seen.clone(), fixed.clone());
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            if fixed.load(Ordering::SeqCst) {
                Ok(payload)
            } else {
                Err(LaneError::CommandError("upstream down".into()))
            }
        }
    });
    let spec = Spec::new(registry("flaky", flaky)).lane(
        "jobs",
        LaneConfig::new(1, 2).with_retry_policy(RetryPolicy::fixed(2, Duration::from_millis(20))),
        0,
    );
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();

    let handle = client
        .submit("jobs", "flaky", json!({"n": 1}))
        .await
        .unwrap();
    let id = handle.id();
    let error = failed(within("the final failure", handle).await);
    assert!(error.to_string().contains("upstream down"), "{error}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "one run and two retries"
    );

    let status = client
        .command(id)
        .await
        .unwrap()
        .expect("a dead letter is known");
    assert_eq!(status.state, CommandState::DeadLettered);
    assert_eq!(
        (status.lane_id.as_str(), status.command_type.as_str()),
        ("jobs", "flaky")
    );
    let letters = client.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].command_id, id);
    assert_eq!(letters[0].payload, Some(json!({"n": 1})));
    assert!(
        letters[0].error.contains("upstream down"),
        "{}",
        letters[0].error
    );

    // Fixed: the re-driven command succeeds and leaves the dead letters.
    healthy.store(true, Ordering::SeqCst);
    let redriven = client.redrive(id).await.unwrap();
    assert_eq!(
        within("the redrive", redriven).await.unwrap(),
        json!({"n": 1})
    );
    assert!(client.dead_letters(10).await.unwrap().is_empty());

    // Broken again: two more dead letters, purged together.
    healthy.store(false, Ordering::SeqCst);
    for n in [2, 3] {
        let handle = client
            .submit("jobs", "flaky", json!({"n": n}))
            .await
            .unwrap();
        failed(within("a failure", handle).await);
    }
    assert_eq!(
        client.dead_letters(1).await.unwrap().len(),
        1,
        "the limit holds"
    );
    assert_eq!(client.purge_dead_letters().await.unwrap(), 2);
    assert!(client.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(client.purge_dead_letters().await.unwrap(), 0);
}

/// One payload rule on every engine: a payload at the depth limit is accepted and comes
/// back intact; one level deeper, or one byte larger than the size limit, is refused at
/// submit with `InvalidInput` naming the limit (it could not be read back once stored).
async fn payloads_past_the_limits_are_refused_at_submit(engine: Engine) {
    let echo = handler_fn(|payload: Value, _ctx: CommandContext| async move { Ok(payload) });
    let spec = Spec::new(registry("echo", echo)).lane("jobs", LaneConfig::new(1, 2), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let nested = |levels: usize| {
        let mut value = json!("core");
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    };

    let deepest = queue
        .client()
        .submit("jobs", "echo", nested(MAX_PAYLOAD_DEPTH))
        .await
        .unwrap();
    assert_eq!(
        within("the deepest payload", deepest).await.unwrap(),
        nested(MAX_PAYLOAD_DEPTH)
    );

    let error = queue
        .client()
        .submit("jobs", "echo", nested(MAX_PAYLOAD_DEPTH + 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LaneError::InvalidInput(message) if message.contains("MAX_PAYLOAD_DEPTH")),
        "{error:?}"
    );
    // A string of MAX_PAYLOAD_BYTES - 1 characters is MAX_PAYLOAD_BYTES + 1 bytes of JSON.
    let error = queue
        .client()
        .submit("jobs", "echo", json!("x".repeat(MAX_PAYLOAD_BYTES - 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LaneError::InvalidInput(message) if message.contains("MAX_PAYLOAD_BYTES")),
        "{error:?}"
    );
}
