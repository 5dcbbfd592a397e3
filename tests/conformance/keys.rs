//! Idempotency keys: a submit carrying the key of a live command queues nothing and
//! returns that command; a finished command frees its key.

use std::time::Duration;

use a3s_lane::{CommandState, LaneConfig, MAX_KEY_BYTES, SubmitOptions, event_keys};
use serde_json::json;

use crate::engine::{Engine, Harness, Spec};
use crate::{Gated, conformance, failed, named, next_start, registry, within};

conformance!(a_submit_with_a_live_key_returns_the_command_holding_it);
conformance!(a_duplicate_from_another_client_gets_the_same_result);
conformance!(a_key_is_free_again_once_its_command_ended);
conformance!(bad_keys_are_refused_at_the_boundary);
conformance!(a_key_holds_across_a_restart: local_storage, redis, redis_cluster);

fn keyed(key: &str) -> SubmitOptions {
    SubmitOptions::new().with_key(key)
}

async fn a_submit_with_a_live_key_returns_the_command_holding_it(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let spec = Spec::new(registry("job", gated.handler()))
        .lane("jobs", LaneConfig::new(1, 1), 0)
        .lane("other", LaneConfig::new(1, 1), 1);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let mut events = client.subscribe();
    let first = client
        .submit_with("jobs", "job", named("first"), keyed("report-4"))
        .await
        .unwrap();
    assert!(!first.is_duplicate());
    assert_eq!(next_start(&mut starts).await, "first");
    // While it runs, the same key returns it: same id, nothing queued, even to another
    // lane and with another payload (keys are per queue).
    let second = client
        .submit_with("other", "job", named("second"), keyed("report-4"))
        .await
        .unwrap();
    assert!(second.is_duplicate(), "{second:?}");
    assert_eq!(second.id(), first.id());
    let stats = client.stats().await.unwrap();
    assert_eq!(
        (stats.lanes["jobs"].pending, stats.lanes["other"].pending),
        (0, 0),
        "a duplicate queued a command"
    );
    // Another key is another command.
    let other = client
        .submit_with("jobs", "job", named("other key"), keyed("report-5"))
        .await
        .unwrap();
    assert!(!other.is_duplicate());
    assert_ne!(other.id(), first.id());
    let event = within("the deduplicated event", async {
        loop {
            let event = events.recv().await.expect("the queue is alive");
            if event.key == event_keys::COMMAND_DEDUPLICATED {
                return event;
            }
        }
    })
    .await;
    assert_eq!(event.payload["command_id"], first.id());
    assert_eq!(event.payload["key"], "report-4");
    assert_eq!(event.payload["lane_id"], "jobs");
    gated.gate.add_permits(2);
    // Both handles get the one run's result.
    let (first, second) = (within("first", first).await, within("second", second).await);
    assert_eq!(first.unwrap(), named("first"));
    assert_eq!(second.unwrap(), named("first"));
    within("the other key's command", other).await.unwrap();
    assert_eq!(next_start(&mut starts).await, "other key");
    assert!(starts.try_recv().is_err(), "a duplicate ran");
}

async fn a_duplicate_from_another_client_gets_the_same_result(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let first = queue
        .client()
        .submit_with("jobs", "job", named("first"), keyed("k"))
        .await
        .unwrap();
    assert_eq!(next_start(&mut starts).await, "first");
    let another = queue.another_client().await;
    let second = another
        .submit_with("jobs", "job", named("second"), keyed("k"))
        .await
        .unwrap();
    assert!(second.is_duplicate());
    assert_eq!(second.id(), first.id());
    gated.gate.add_permits(1);
    assert_eq!(
        within("the duplicate's result", second).await.unwrap(),
        named("first")
    );
    assert_eq!(
        within("the first's result", first).await.unwrap(),
        named("first")
    );
}

async fn a_key_is_free_again_once_its_command_ended(engine: Engine) {
    let (gated, mut starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    // Completed.
    let done = client
        .submit_with("jobs", "job", named("done"), keyed("k"))
        .await
        .unwrap();
    let done_id = done.id();
    within("the first command", done).await.unwrap();
    // Cancelled while delayed.
    let delayed = client
        .submit_with(
            "jobs",
            "job",
            named("delayed"),
            keyed("k").with_delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(
        !delayed.is_duplicate(),
        "a finished command still held its key"
    );
    assert_ne!(delayed.id(), done_id);
    let status = client.command(delayed.id()).await.unwrap().unwrap();
    assert_eq!(status.state, CommandState::Delayed);
    client.cancel(delayed.id()).await.unwrap();
    assert!(failed(within("the cancelled command", delayed).await).is_cancelled());
    // Expired.
    client.pause_lane("jobs").await.unwrap();
    let expiring = client
        .submit_with(
            "jobs",
            "job",
            named("expiring"),
            keyed("k").with_start_within(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert!(
        !expiring.is_duplicate(),
        "a cancelled command still held its key"
    );
    assert!(failed(within("the deadline", expiring).await).is_expired());
    client.resume_lane("jobs").await.unwrap();
    let last = client
        .submit_with("jobs", "job", named("last"), keyed("k"))
        .await
        .unwrap();
    assert!(
        !last.is_duplicate(),
        "an expired command still held its key"
    );
    within("the last command", last).await.unwrap();
    assert_eq!(next_start(&mut starts).await, "done");
    assert_eq!(next_start(&mut starts).await, "last");
}

async fn bad_keys_are_refused_at_the_boundary(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    for (key, expected) in [
        (String::new(), "empty"),
        ("k".repeat(MAX_KEY_BYTES + 1), "bytes long"),
    ] {
        let error = client
            .submit_with("jobs", "job", json!({}), keyed(&key))
            .await
            .unwrap_err();
        assert!(
            matches!(error, a3s_lane::LaneError::InvalidInput(_)),
            "{error:?}"
        );
        assert!(error.to_string().contains(expected), "{error}");
    }
    // The longest key is taken.
    let longest = client
        .submit_with("jobs", "job", named("x"), keyed(&"k".repeat(MAX_KEY_BYTES)))
        .await
        .unwrap();
    within("the longest key's command", longest).await.unwrap();
    assert_eq!(client.stats().await.unwrap().lanes["jobs"].pending, 0);
}

async fn a_key_holds_across_a_restart(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    // (A keyed submit to a durable queue comes after its start: the stored keys are
    // read back then.)
    queue.start().await;
    let id = queue
        .client()
        .submit_with(
            "jobs",
            "job",
            named("held"),
            keyed("nightly").with_delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap()
        .id();
    queue.restart().await;
    queue.start().await;
    let again = queue
        .client()
        .submit_with("jobs", "job", named("again"), keyed("nightly"))
        .await
        .unwrap();
    assert!(again.is_duplicate(), "the key was lost in the restart");
    assert_eq!(again.id(), id);
    assert_eq!(
        queue.client().stats().await.unwrap().lanes["jobs"].delayed,
        1
    );
    assert_eq!(
        queue.client().stats().await.unwrap().lanes["jobs"].pending,
        0
    );
}
