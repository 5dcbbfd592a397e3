//! Groups inside a lane: turns between groups, group caps and overrides, a group's rate
//! limit, pause, resume and cancel of a whole group, its status, and bad group input.

use std::time::Duration;

use a3s_lane::{
    CommandState, GroupLimits, LaneConfig, LaneError, Page, QueueClient, RateLimitConfig,
    SubmitOptions, SubmittedCommand,
};
use serde_json::Value;

use crate::engine::{Engine, Harness, Spec};
use crate::{Gated, conformance, failed, named, next_start, registry, within};

conformance!(one_groups_backlog_delays_another_group_by_one_turn);
conformance!(a_group_never_runs_more_than_its_cap_and_overrides_apply);
conformance!(a_group_rate_limit_spaces_its_starts);
conformance!(a_paused_group_waits_while_other_groups_run);
conformance!(cancel_group_ends_that_groups_commands_only);
conformance!(bad_group_input_is_refused_at_the_boundary);

/// Commands group A submits behind its first while that one runs.
const BACKLOG: usize = 10_000;

async fn submit_in(
    client: &dyn QueueClient,
    lane: &str,
    group: &str,
    name: &str,
) -> SubmittedCommand {
    client
        .submit_with(
            lane,
            "job",
            named(name),
            SubmitOptions::new().with_group(group),
        )
        .await
        .unwrap_or_else(|error| panic!("submit {name} in group {group}: {error}"))
}

/// The fairness proof: group A submits 10,000 commands, then group B one; B's
/// command starts right after the A command that was running, before any other of A's.
#[allow(
    clippy::async_yields_async,
    reason = "the backlog's submits return handles, awaited later"
)]
async fn one_groups_backlog_delays_another_group_by_one_turn(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let spec = Spec::new(registry("job", gated.handler()))
        .lane("shared", LaneConfig::new(1, 1), 0)
        .runner_slots(4);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let first = submit_in(client, "shared", "a", "a-0").await;
    assert_eq!(next_start(&mut starts).await, "a-0");
    // Submitted concurrently, in chunks: on a durable engine each submit is a write.
    let mut backlog = Vec::with_capacity(BACKLOG);
    for chunk in (1..BACKLOG).collect::<Vec<_>>().chunks(250) {
        let submits = chunk.iter().map(|n| {
            let name = format!("a-{n}");
            async move { submit_in(client, "shared", "a", &name).await }
        });
        backlog.extend(futures_util::future::join_all(submits).await);
    }
    let b = submit_in(client, "shared", "b", "b-0").await;
    let status = client.group_status("shared", "a").await.unwrap();
    assert_eq!(
        (status.pending, status.active),
        (BACKLOG - 1, 1),
        "{status:?}"
    );
    gated.gate.add_permits(1);
    within("a-0", first).await.unwrap();
    assert_eq!(
        next_start(&mut starts).await,
        "b-0",
        "B's one command starts right after the A command that was running"
    );
    // A's backlog is cancelled as a whole, the running b-0 is untouched.
    let reached = client.cancel_group("shared", "a").await.unwrap();
    assert_eq!(reached, BACKLOG - 1);
    gated.gate.add_permits(1);
    within("b-0", b).await.unwrap();
    for handle in backlog.into_iter().take(3) {
        let error = failed(within("a cancelled command", handle).await);
        assert!(error.is_cancelled(), "{error}");
    }
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.lanes["shared"].pending, 0, "{stats:?}");
}

/// A lane of cap 8 whose groups may run 2 each, except "vip" which may run 4.
async fn a_group_never_runs_more_than_its_cap_and_overrides_apply(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let lane = LaneConfig::new(1, 8)
        .with_group_limits(GroupLimits::new().with_max_concurrency(2))
        .with_group_override("vip", GroupLimits::new().with_max_concurrency(4));
    let spec = Spec::new(registry("job", gated.handler()))
        .lane("api", lane, 0)
        .runner_slots(16);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let mut handles = Vec::new();
    for n in 0..5 {
        handles.push(submit_in(client, "api", "basic", &format!("basic-{n}")).await);
        handles.push(submit_in(client, "api", "vip", &format!("vip-{n}")).await);
    }
    let mut started = Vec::new();
    for _ in 0..6 {
        started.push(next_start(&mut starts).await);
    }
    let basic = started.iter().filter(|s| s.starts_with("basic")).count();
    assert_eq!((basic, 6 - basic), (2, 4), "started: {started:?}");
    // Nothing else starts while the caps are reached (the lane has 2 slots left).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(starts.try_recv().is_err(), "a group ran past its cap");
    let basic = client.group_status("api", "basic").await.unwrap();
    assert_eq!(
        (basic.active, basic.pending, basic.max_concurrency),
        (2, 3, Some(2))
    );
    let vip = client.group_status("api", "vip").await.unwrap();
    assert_eq!(
        (vip.active, vip.pending, vip.max_concurrency),
        (4, 1, Some(4))
    );
    // One finished run of a group lets exactly one more of it start.
    gated.gate.add_permits(1);
    next_start(&mut starts).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(starts.try_recv().is_err(), "one release starts one command");
    gated.gate.add_permits(1_000);
    for handle in handles {
        within("a result", handle).await.unwrap();
    }
    let idle = client.group_status("api", "basic").await.unwrap();
    assert_eq!((idle.active, idle.pending), (0, 0));
}

/// A group limited to one start per 250 ms: its third command starts no sooner than
/// 500 ms after its first, while another group's command starts at once.
async fn a_group_rate_limit_spaces_its_starts(engine: Engine) {
    let (gated, mut starts) = Gated::open();
    let limit = RateLimitConfig::token_bucket(1, Duration::from_millis(250), 1);
    let lane = LaneConfig::new(1, 8).with_group_limits(GroupLimits::new().with_rate_limit(limit));
    let spec = Spec::new(registry("job", gated.handler())).lane("api", lane, 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let begin = tokio::time::Instant::now();
    let mut handles = Vec::new();
    for n in 0..3 {
        handles.push(submit_in(client, "api", "slow", &format!("slow-{n}")).await);
    }
    let other = submit_in(client, "api", "other", "other-0").await;
    within("the other group's command", other).await.unwrap();
    assert!(
        begin.elapsed() < Duration::from_millis(450),
        "the other group is not held by slow's limit"
    );
    let mut at = Vec::new();
    for handle in handles {
        within("a rate-limited command", handle).await.unwrap();
        at.push(begin.elapsed());
    }
    assert!(
        at[2] >= Duration::from_millis(480),
        "three starts at one per 250 ms take at least 500 ms: {at:?}"
    );
    let mut names = Vec::new();
    while let Ok(name) = starts.try_recv() {
        names.push(name);
    }
    let slow: Vec<&String> = names.iter().filter(|n| n.starts_with("slow")).collect();
    assert_eq!(
        slow,
        ["slow-0", "slow-1", "slow-2"],
        "FIFO inside the group"
    );
}

async fn a_paused_group_waits_while_other_groups_run(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("api", LaneConfig::new(1, 4), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    // A group may be paused before it has any command.
    client.pause_group("api", "held").await.unwrap();
    let held = submit_in(client, "api", "held", "held-0").await;
    let free = submit_in(client, "api", "free", "free-0").await;
    let ungrouped = client.submit("api", "job", named("plain")).await.unwrap();
    within("the free group", free).await.unwrap();
    within("a command of no group", ungrouped).await.unwrap();
    let status = client.command(held.id()).await.unwrap().unwrap();
    assert_eq!(status.state, CommandState::Pending);
    let group = client.group_status("api", "held").await.unwrap();
    assert!(group.paused && group.pending == 1, "{group:?}");
    let listed = client.groups("api", Page::default()).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(
        keys,
        ["held"],
        "only groups with work or a pause are listed"
    );
    client.resume_group("api", "held").await.unwrap();
    within("the resumed group", held).await.unwrap();
    let group = client.group_status("api", "held").await.unwrap();
    assert!(!group.paused && group.pending == 0, "{group:?}");
    assert!(
        client
            .groups("api", Page::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn cancel_group_ends_that_groups_commands_only(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let lane = LaneConfig::new(1, 1).with_cancel_grace(Duration::from_millis(100));
    let spec = Spec::new(registry("job", gated.handler())).lane("api", lane, 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let running = submit_in(client, "api", "doomed", "doomed-0").await;
    assert_eq!(next_start(&mut starts).await, "doomed-0");
    let waiting = submit_in(client, "api", "doomed", "doomed-1").await;
    let delayed = client
        .submit_with(
            "api",
            "job",
            named("doomed-later"),
            SubmitOptions::new()
                .with_group("doomed")
                .with_delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let survivor = submit_in(client, "api", "kept", "kept-0").await;
    let reached = client.cancel_group("api", "doomed").await.unwrap();
    assert_eq!(reached, 3, "one running, one pending, one delayed");
    for handle in [waiting, delayed] {
        let error = failed(within("a cancelled command", handle).await);
        assert!(error.is_cancelled(), "{error}");
    }
    // The running one ignores its signal and is dropped after the grace.
    let error = failed(within("the running command", running).await);
    assert!(error.is_cancelled(), "{error}");
    assert_eq!(next_start(&mut starts).await, "kept-0");
    gated.gate.add_permits(1);
    within("the other group's command", survivor).await.unwrap();
    assert_eq!(client.cancel_group("api", "nobody").await.unwrap(), 0);
}

async fn bad_group_input_is_refused_at_the_boundary(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("api", LaneConfig::new(1, 4), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    for bad in [String::new(), "x".repeat(a3s_lane::MAX_GROUP_BYTES + 1)] {
        let error = client
            .submit_with(
                "api",
                "job",
                Value::Null,
                SubmitOptions::new().with_group(bad.clone()),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
        let error = client.pause_group("api", &bad).await.unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
    }
    let error = client.group_status("nope", "a").await.unwrap_err();
    assert!(matches!(error, LaneError::LaneNotFound { .. }), "{error:?}");
    // A group cap of 0 is refused when the queue is built.
    let (gated, _starts) = Gated::open();
    let zero = LaneConfig::new(1, 4).with_group_limits(GroupLimits::new().with_max_concurrency(0));
    let spec = Spec::new(registry("job", gated.handler())).lane("api", zero, 0);
    let error = Harness::try_open(engine, spec)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&error, LaneError::ConfigError(m) if m.contains("max_concurrency of 0")),
        "{error:?}"
    );
}

conformance!(a_rate_limit_that_holds_a_start_back_is_reported_once_per_wait);

/// A subscriber learns when a rate limit holds back a lane's next start: the lane's own
/// limit (`limit` "lane", no group) and a group's (`limit` "group", the group named), with
/// the instant it may start again; a lane without limits reports nothing.
async fn a_rate_limit_that_holds_a_start_back_is_reported_once_per_wait(engine: Engine) {
    use a3s_lane::event_keys;

    let (gated, _starts) = Gated::open();
    let every = Duration::from_millis(200);
    let spec = Spec::new(registry("job", gated.handler()))
        .lane(
            "api",
            LaneConfig::new(1, 8).with_rate_limit(RateLimitConfig::token_bucket(1, every, 1)),
            0,
        )
        .lane(
            "tenants",
            LaneConfig::new(1, 8).with_group_limits(
                GroupLimits::new().with_rate_limit(RateLimitConfig::token_bucket(1, every, 1)),
            ),
            1,
        )
        .lane("free", LaneConfig::new(1, 8), 2);
    let mut queue = Harness::open(engine, spec).await;
    let mut events = queue.client().subscribe();
    queue.start().await;
    let client = queue.client();
    let mut handles = Vec::new();
    for n in 0..2 {
        handles.push(
            client
                .submit("api", "job", named(&format!("api-{n}")))
                .await
                .unwrap(),
        );
        handles.push(submit_in(client, "tenants", "g1", &format!("g1-{n}")).await);
        handles.push(
            client
                .submit("free", "job", named(&format!("free-{n}")))
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        within("a command", handle).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = within("a throttled event", events.recv()).await.unwrap();
        if event.key != event_keys::LANE_THROTTLED {
            continue;
        }
        let payload = &event.payload;
        assert_ne!(payload["lane_id"], "free", "{payload}");
        let until = payload["until_ms"].as_u64().expect("until_ms");
        assert!(
            until + 50 >= event.timestamp && until <= event.timestamp + 1_000,
            "until_ms {until} is about one interval after the event at {}",
            event.timestamp
        );
        seen.push((
            payload["lane_id"].as_str().unwrap().to_owned(),
            payload["group"].as_str().map(str::to_owned),
            payload["limit"].as_str().unwrap().to_owned(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("api".to_owned(), None, "lane".to_owned()),
            (
                "tenants".to_owned(),
                Some("g1".to_owned()),
                "group".to_owned()
            ),
        ]
    );
}
