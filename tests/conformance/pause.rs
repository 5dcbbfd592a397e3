//! Pausing and resuming lanes.

use std::time::Duration;

use a3s_lane::{CommandState, LaneConfig};

use crate::engine::{Engine, Harness, Spec};
use crate::{Gated, conformance, named, registry, within};

conformance!(a_paused_lane_starts_nothing_until_resumed);
conformance!(a_lane_paused_for_a_while_resumes_by_itself);

async fn a_paused_lane_starts_nothing_until_resumed(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler()))
        .lane("paused", LaneConfig::new(1, 4), 0)
        .lane("other", LaneConfig::new(1, 4), 1);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    client.pause_lane("paused").await.unwrap();
    let held = client.submit("paused", "job", named("held")).await.unwrap();
    // A command of another lane, submitted after it, runs: the runner looked at the
    // queue after the paused lane's command was there, and left it.
    let other = client.submit("other", "job", named("other")).await.unwrap();
    within("the other lane", other).await.unwrap();
    let status = client.command(held.id()).await.unwrap().unwrap();
    assert_eq!(status.state, CommandState::Pending);
    let stats = client.stats().await.unwrap();
    assert!(stats.lanes["paused"].paused);
    assert_eq!(stats.lanes["paused"].pending, 1);
    let unknown = client.pause_lane("nope").await.unwrap_err();
    assert!(
        matches!(&unknown, a3s_lane::LaneError::LaneNotFound { lane, .. } if lane == "nope"),
        "{unknown:?}"
    );

    client.resume_lane("paused").await.unwrap();
    within("the resumed lane", held).await.unwrap();
    assert!(!client.stats().await.unwrap().lanes["paused"].paused);
}

async fn a_lane_paused_for_a_while_resumes_by_itself(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("api", LaneConfig::new(1, 4), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let started = tokio::time::Instant::now();
    client
        .pause_lane_for("api", Duration::from_millis(200))
        .await
        .unwrap();
    let handle = client.submit("api", "job", named("later")).await.unwrap();
    within("the end of the pause", handle).await.unwrap();
    // The same rule on every engine: longer than zero, at most a year.
    for refused in [
        Duration::ZERO,
        a3s_lane::MAX_TIMED_PAUSE + Duration::from_secs(1),
    ] {
        let error = client.pause_lane_for("api", refused).await.unwrap_err();
        assert!(
            matches!(error, a3s_lane::LaneError::ConfigError(_)),
            "{error:?}"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "it waited for the pause ({:?})",
        started.elapsed()
    );
}
