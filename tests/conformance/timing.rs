//! Commands in time: delays and start times, start-by deadlines, bounded lanes.

use std::time::{Duration, SystemTime};

use a3s_lane::{CommandState, LaneConfig, LaneError, SubmitOptions, WhenFull, event_keys};

use crate::engine::{Engine, Harness, Spec};
use crate::{Gated, conformance, failed, named, next_start, registry, within};

conformance!(a_delayed_command_waits_then_takes_its_place_at_the_back);
conformance!(a_delayed_command_can_be_cancelled);
conformance!(a_command_not_started_by_its_deadline_expires_unrun);
conformance!(a_full_lane_refuses_a_submit_naming_its_limit);
conformance!(a_full_lane_that_waits_takes_the_submit_once_there_is_room);
conformance!(bad_times_are_refused_at_the_boundary);
conformance!(a_producer_waits_until_the_backlog_is_below_a_limit);
conformance!(a_delayed_command_survives_a_restart: local_storage, redis, redis_cluster);

fn delayed(by: Duration) -> SubmitOptions {
    SubmitOptions::new().with_delay(by)
}

async fn a_delayed_command_waits_then_takes_its_place_at_the_back(engine: Engine) {
    let (gated, mut starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let submitted = tokio::time::Instant::now();
    let later = client
        .submit_with(
            "jobs",
            "job",
            named("later"),
            delayed(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    let status = client.command(later.id()).await.unwrap().unwrap();
    assert_eq!(status.state, CommandState::Delayed);
    let stats = client.stats().await.unwrap();
    assert_eq!(
        (stats.lanes["jobs"].delayed, stats.lanes["jobs"].pending),
        (1, 0)
    );
    let now = client.submit("jobs", "job", named("now")).await.unwrap();
    assert_eq!(next_start(&mut starts).await, "now");
    within("the undelayed command", now).await.unwrap();
    within("the delayed command", later).await.unwrap();
    assert_eq!(next_start(&mut starts).await, "later");
    assert!(
        submitted.elapsed() >= Duration::from_millis(400),
        "ran {:?} after its submit, before its delay was over",
        submitted.elapsed()
    );
    assert_eq!(client.stats().await.unwrap().lanes["jobs"].delayed, 0);
}

async fn a_delayed_command_can_be_cancelled(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let handle = client
        .submit_with(
            "jobs",
            "job",
            named("never"),
            delayed(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let outcome = client.cancel(handle.id()).await.unwrap();
    assert_eq!(outcome, a3s_lane::CancelOutcome::Cancelled);
    assert!(failed(within("the cancelled command", handle).await).is_cancelled());
    assert_eq!(client.stats().await.unwrap().lanes["jobs"].delayed, 0);
}

async fn a_command_not_started_by_its_deadline_expires_unrun(engine: Engine) {
    let (gated, mut starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let mut events = client.subscribe();
    client.pause_lane("jobs").await.unwrap();
    let late = client
        .submit_with(
            "jobs",
            "job",
            named("late"),
            SubmitOptions::new().with_start_within(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let id = late.id();
    let error = failed(within("the deadline", late).await);
    assert!(error.is_expired(), "{error:?}");
    assert!(error.to_string().contains("start-by deadline"), "{error}");
    let event = within("the expired event", async {
        loop {
            let event = events.recv().await.expect("the queue is alive");
            if event.key == event_keys::COMMAND_EXPIRED {
                return event;
            }
        }
    })
    .await;
    assert_eq!(event.payload["command_id"], id);
    assert_eq!(client.stats().await.unwrap().lanes["jobs"].expired, 1);
    // A command with a deadline it meets runs as usual; the expired one never started.
    client.resume_lane("jobs").await.unwrap();
    let met = client
        .submit_with(
            "jobs",
            "job",
            named("met"),
            SubmitOptions::new().with_start_within(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    within("the command that met its deadline", met)
        .await
        .unwrap();
    assert_eq!(next_start(&mut starts).await, "met");
}

async fn a_full_lane_refuses_a_submit_naming_its_limit(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane(
        "bounded",
        LaneConfig::new(1, 1).with_max_waiting(2),
        0,
    );
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    client.pause_lane("bounded").await.unwrap();
    let first = client.submit("bounded", "job", named("1")).await.unwrap();
    // A delayed command waits too: it counts against the bound.
    let second = client
        .submit_with(
            "bounded",
            "job",
            named("2"),
            delayed(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let error = client
        .submit("bounded", "job", named("3"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LaneError::LaneFull { lane, limit: 2 } if lane == "bounded"),
        "{error:?}"
    );
    let lane = &client.stats().await.unwrap().lanes["bounded"];
    assert_eq!((lane.rejected_full, lane.max_waiting), (1, Some(2)));
    client.resume_lane("bounded").await.unwrap();
    within("the first", first).await.unwrap();
    within("the second", second).await.unwrap();
    // Room again.
    let third = client.submit("bounded", "job", named("3")).await.unwrap();
    within("the third", third).await.unwrap();
}

async fn a_full_lane_that_waits_takes_the_submit_once_there_is_room(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler()))
        .lane(
            "waits",
            LaneConfig::new(1, 1)
                .with_max_waiting(1)
                .with_when_full(WhenFull::Wait { timeout: None }),
            0,
        )
        .lane(
            "gives_up",
            LaneConfig::new(1, 1)
                .with_max_waiting(1)
                .with_when_full(WhenFull::Wait {
                    timeout: Some(Duration::from_millis(200)),
                }),
            1,
        );
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    client.pause_lane("waits").await.unwrap();
    client.pause_lane("gives_up").await.unwrap();
    let first = client.submit("waits", "job", named("1")).await.unwrap();
    let mut second = Box::pin(client.submit("waits", "job", named("2")));
    // It waits while the lane is full...
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut second)
            .await
            .is_err(),
        "a submit to a full lane that waits returned before there was room"
    );
    // ...and is taken once the first command leaves the lane.
    client.resume_lane("waits").await.unwrap();
    let second = within("room in the lane", second).await.unwrap();
    within("the first", first).await.unwrap();
    within("the second", second).await.unwrap();

    // Held (the lane is paused), this one keeps the lane full for the next submit.
    let _held = client.submit("gives_up", "job", named("1")).await.unwrap();
    let started = tokio::time::Instant::now();
    let error = within(
        "the wait's timeout",
        client.submit("gives_up", "job", named("2")),
    )
    .await
    .unwrap_err();
    assert!(error.is_lane_full(), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

async fn bad_times_are_refused_at_the_boundary(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let queue = Harness::open(engine, spec).await;
    let client = queue.client();
    let now = SystemTime::now();
    for (options, expected) in [
        (
            SubmitOptions::new().with_run_at(now - Duration::from_secs(60)),
            "in the past",
        ),
        (
            SubmitOptions::new().with_start_by(now - Duration::from_secs(60)),
            "in the past",
        ),
        (
            SubmitOptions::new()
                .with_delay(Duration::from_secs(1))
                .with_run_at(now),
            "not both",
        ),
        (
            SubmitOptions::new().with_delay(Duration::MAX),
            "longer than 100 years",
        ),
        (
            // A deadline at the very instant it may start could never be met.
            SubmitOptions::new()
                .with_delay(Duration::from_secs(5))
                .with_start_within(Duration::from_secs(5)),
            "could never run",
        ),
    ] {
        let error = client
            .submit_with("jobs", "job", named("bad"), options)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, LaneError::InvalidInput(m) if m.contains(expected)),
            "{error:?}"
        );
    }
    assert_eq!(client.stats().await.unwrap().lanes["jobs"].pending, 0);
}

async fn a_delayed_command_survives_a_restart(engine: Engine) {
    let (gated, mut starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    let soon = queue
        .client()
        .submit_with(
            "jobs",
            "job",
            named("soon"),
            delayed(Duration::from_millis(300)),
        )
        .await
        .unwrap()
        .id();
    let later = queue
        .client()
        .submit_with(
            "jobs",
            "job",
            named("later"),
            delayed(Duration::from_secs(3600)),
        )
        .await
        .unwrap()
        .id();
    queue.restart().await;
    // `soon` falls due while nothing runs the queue: it runs at start.
    tokio::time::sleep(Duration::from_millis(400)).await;
    queue.start().await;
    assert_eq!(next_start(&mut starts).await, "soon");
    let status = queue.client().command(later).await.unwrap();
    let status = status.unwrap_or_else(|| panic!("delayed command {later} survived the restart"));
    assert_eq!(status.state, CommandState::Delayed);
    let _ = soon;
}

async fn a_producer_waits_until_the_backlog_is_below_a_limit(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let spec = Spec::new(registry("job", gated.handler()))
        .lane("jobs", LaneConfig::new(1, 1), 0)
        .lane("idle", LaneConfig::new(1, 1), 1);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    // One runs (held by the gate), three wait, one of them delayed.
    let mut handles = Vec::new();
    for name in ["a", "b", "c"] {
        handles.push(client.submit("jobs", "job", named(name)).await.unwrap());
    }
    assert_eq!(next_start(&mut starts).await, "a");
    handles.push(
        client
            .submit_with(
                "jobs",
                "job",
                named("d"),
                delayed(Duration::from_secs(3600)),
            )
            .await
            .unwrap(),
    );
    // Holds already: at once.
    within(
        "a bound that holds",
        client.wait_waiting_below(4, Some("jobs")),
    )
    .await
    .unwrap();
    within("an empty lane", client.wait_waiting_below(1, Some("idle")))
        .await
        .unwrap();
    let below_two = client.wait_waiting_below(2, Some("jobs"));
    tokio::pin!(below_two);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut below_two)
            .await
            .is_err(),
        "returned while 3 commands waited"
    );
    // "a" ends, "b" starts: 2 wait ("c" and the delayed "d"); then "c" is cancelled.
    gated.gate.add_permits(1);
    assert_eq!(next_start(&mut starts).await, "b");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut below_two)
            .await
            .is_err(),
        "returned while 2 commands waited"
    );
    client.cancel(handles[2].id()).await.unwrap();
    within("the backlog below 2", below_two).await.unwrap();
    let stats = client.stats().await.unwrap();
    assert_eq!(
        (stats.lanes["jobs"].pending, stats.lanes["jobs"].delayed),
        (0, 1)
    );
    // All lanes: the delayed one still waits.
    within("all lanes below 2", client.wait_waiting_below(2, None))
        .await
        .unwrap();
    let error = client.wait_waiting_below(0, None).await.unwrap_err();
    assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
    let error = client
        .wait_waiting_below(1, Some("nope"))
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::LaneNotFound { .. }), "{error:?}");
    gated.gate.add_permits(8);
}
