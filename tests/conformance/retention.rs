//! A command's state and result afterwards: lookup by id with times and outcome,
//! per-lane retention of finished commands (keep the last N of each final state, each for
//! at most a duration), and listings by lane and state, paged.

use std::time::Duration;

use a3s_lane::{CommandState, LaneConfig, LaneError, Page, Retention, RetryPolicy, SubmitOptions};
use serde_json::json;

use crate::engine::{Engine, Harness, Spec};
use crate::{Gated, conformance, failed, named, next_start, registry, within};

conformance!(a_finished_command_is_looked_up_with_its_times_and_result);
conformance!(every_final_state_is_kept_with_its_error);
conformance!(another_client_reads_the_result_of_an_earlier_submit);
conformance!(a_lane_keeps_the_last_n_of_each_final_state);
conformance!(a_lane_that_keeps_nothing_forgets_a_command_once_it_ended);
conformance!(a_finished_command_is_gone_after_keep_for);
conformance!(commands_are_listed_by_lane_and_state_paged);
conformance!(bad_listings_and_retentions_are_refused_at_the_boundary);
conformance!(finished_commands_are_kept_across_a_restart: local_storage, redis, redis_cluster);

fn ids(statuses: &[a3s_lane::CommandStatus]) -> Vec<u64> {
    statuses.iter().map(|s| s.id).collect()
}

async fn a_finished_command_is_looked_up_with_its_times_and_result(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let before = now_ms();
    let submitted = client.submit("jobs", "job", named("a")).await.unwrap();
    let id = submitted.id();
    assert_eq!(within("the command", submitted).await.unwrap(), named("a"));
    let status = client
        .command(id)
        .await
        .unwrap()
        .expect("a finished command is kept");
    assert_eq!(status.state, CommandState::Completed);
    assert_eq!(
        (status.lane_id.as_str(), status.command_type.as_str()),
        ("jobs", "job")
    );
    assert_eq!(status.attempts, 1);
    assert_eq!(status.result, Some(named("a")));
    assert_eq!(status.error, None);
    assert_eq!(status.outcome(), Some(Ok(named("a"))));
    let submitted_at = status.submitted_at_ms.expect("submit time");
    let started_at = status.started_at_ms.expect("start time");
    let finished_at = status.finished_at_ms.expect("finish time");
    // Clocks of different hosts (Redis' and ours) may differ by a little.
    assert!(submitted_at + 1000 >= before, "{status:?}");
    assert!(
        submitted_at <= started_at + 1000 && started_at <= finished_at,
        "{status:?}"
    );
    assert!(finished_at <= now_ms() + 1000, "{status:?}");
}

async fn every_final_state_is_kept_with_its_error(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let handlers = registry("job", gated.handler());
    handlers.register(
        "broken",
        a3s_lane::handler_fn(|_payload, _ctx| async {
            Err(LaneError::CommandError("out of paper".into()))
        }),
    );
    let spec = Spec::new(handlers).lane(
        "jobs",
        LaneConfig::new(1, 1).with_retry_policy(RetryPolicy::none()),
        0,
    );
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    // A failure (a dead letter: every conformance engine keeps them).
    let broken = client.submit("jobs", "broken", json!(null)).await.unwrap();
    let broken_id = broken.id();
    failed(within("the failure", broken).await);
    let status = client.command(broken_id).await.unwrap().unwrap();
    assert_eq!(status.state, CommandState::DeadLettered);
    assert!(
        status
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("out of paper"),
        "{status:?}"
    );
    // A cancelled pending command, behind a running one.
    let running = client
        .submit("jobs", "job", named("running"))
        .await
        .unwrap();
    assert_eq!(next_start(&mut starts).await, "running");
    let waiting = client
        .submit("jobs", "job", named("waiting"))
        .await
        .unwrap();
    let waiting_id = waiting.id();
    client.cancel(waiting_id).await.unwrap();
    assert!(failed(within("the cancel", waiting).await).is_cancelled());
    let status = client.command(waiting_id).await.unwrap().unwrap();
    assert_eq!(status.state, CommandState::Cancelled);
    assert_eq!(status.attempts, 0, "it never ran");
    assert_eq!(status.error.as_ref().unwrap().kind, "cancelled");
    assert_eq!(status.started_at_ms, None);
    assert!(matches!(
        status.outcome(),
        Some(Err(LaneError::Cancelled(_)))
    ));
    // An expired one: its deadline passes while the lane is busy.
    let late = client
        .submit_with(
            "jobs",
            "job",
            named("late"),
            SubmitOptions::new().with_start_within(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    let late_id = late.id();
    assert!(failed(within("the expiry", late).await).is_expired());
    let status = client.command(late_id).await.unwrap().unwrap();
    assert_eq!(status.state, CommandState::Expired);
    assert_eq!(status.error.as_ref().unwrap().kind, "expired");
    gated.gate.add_permits(1);
    within("the running command", running).await.unwrap();
}

async fn another_client_reads_the_result_of_an_earlier_submit(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    // Submitted, then the submitter goes away without awaiting it.
    let id = {
        let submitted = queue
            .client()
            .submit("jobs", "job", named("x"))
            .await
            .unwrap();
        submitted.id()
    };
    queue.start().await;
    let other = queue.another_client().await;
    let status = within("the result, read by another client", async {
        loop {
            if let Some(status) = other.command(id).await.unwrap()
                && status.state.is_final()
            {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(status.state, CommandState::Completed);
    assert_eq!(status.result, Some(named("x")));
}

async fn a_lane_keeps_the_last_n_of_each_final_state(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let keep_two =
        LaneConfig::new(1, 1).with_retention(Retention::new(2, Duration::from_secs(3600)));
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", keep_two, 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let mut done = Vec::new();
    for name in ["a", "b", "c"] {
        let submitted = client.submit("jobs", "job", named(name)).await.unwrap();
        done.push(submitted.id());
        within("the command", submitted).await.unwrap();
    }
    // A cancelled one has its own list: it evicts no completed one.
    client.pause_lane("jobs").await.unwrap();
    let cancelled = client.submit("jobs", "job", named("d")).await.unwrap();
    let cancelled_id = cancelled.id();
    client.cancel(cancelled_id).await.unwrap();
    assert!(failed(within("the cancel", cancelled).await).is_cancelled());
    let completed = client
        .list_commands("jobs", CommandState::Completed, Page::default())
        .await
        .unwrap();
    assert_eq!(
        ids(&completed),
        [done[2], done[1]],
        "the newest two, newest first"
    );
    assert_eq!(completed[0].result, Some(named("c")));
    assert!(
        client.command(done[0]).await.unwrap().is_none(),
        "the oldest was let go"
    );
    let cancelled = client
        .list_commands("jobs", CommandState::Cancelled, Page::default())
        .await
        .unwrap();
    assert_eq!(ids(&cancelled), [cancelled_id]);
}

async fn a_lane_that_keeps_nothing_forgets_a_command_once_it_ended(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane(
        "jobs",
        LaneConfig::new(1, 1).with_retention(Retention::none()),
        0,
    );
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let submitted = client.submit("jobs", "job", named("a")).await.unwrap();
    let id = submitted.id();
    assert_eq!(within("the command", submitted).await.unwrap(), named("a"));
    assert_eq!(client.command(id).await.unwrap(), None);
    let listed = client
        .list_commands("jobs", CommandState::Completed, Page::default())
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

async fn a_finished_command_is_gone_after_keep_for(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let brief =
        LaneConfig::new(1, 1).with_retention(Retention::new(100, Duration::from_millis(400)));
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", brief, 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let submitted = client.submit("jobs", "job", named("a")).await.unwrap();
    let id = submitted.id();
    within("the command", submitted).await.unwrap();
    assert!(
        client.command(id).await.unwrap().is_some(),
        "kept for a while"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        client.command(id).await.unwrap(),
        None,
        "gone after keep_for"
    );
    let listed = client
        .list_commands("jobs", CommandState::Completed, Page::default())
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

async fn commands_are_listed_by_lane_and_state_paged(engine: Engine) {
    let (gated, mut starts) = Gated::closed();
    let spec = Spec::new(registry("job", gated.handler()))
        .lane("jobs", LaneConfig::new(1, 1), 0)
        .lane("other", LaneConfig::new(1, 1), 1);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let client = queue.client();
    let running = client
        .submit("jobs", "job", named("running"))
        .await
        .unwrap();
    assert_eq!(next_start(&mut starts).await, "running");
    let mut pending = Vec::new();
    for name in ["p1", "p2", "p3"] {
        pending.push(client.submit("jobs", "job", named(name)).await.unwrap());
    }
    let elsewhere = client
        .submit("other", "job", named("elsewhere"))
        .await
        .unwrap();
    let later = client
        .submit_with(
            "jobs",
            "job",
            named("later"),
            SubmitOptions::new().with_delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let sooner = client
        .submit_with(
            "jobs",
            "job",
            named("sooner"),
            SubmitOptions::new().with_delay(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let list = |state, page| client.list_commands("jobs", state, page);
    let first = list(CommandState::Pending, Page::first(2)).await.unwrap();
    let rest = list(CommandState::Pending, Page::new(2, 2)).await.unwrap();
    assert_eq!(
        ids(&first),
        [pending[0].id(), pending[1].id()],
        "in start order"
    );
    assert_eq!(ids(&rest), [pending[2].id()]);
    assert!(
        first
            .iter()
            .all(|s| s.state == CommandState::Pending && s.lane_id == "jobs")
    );
    let delayed = list(CommandState::Delayed, Page::default()).await.unwrap();
    assert_eq!(ids(&delayed), [sooner.id(), later.id()], "by due time");
    let active = list(CommandState::Running, Page::default()).await.unwrap();
    assert_eq!(ids(&active), [running.id()]);
    assert_eq!(active[0].attempts, 1);
    assert!(active[0].started_at_ms.is_some());
    let beyond = list(CommandState::Pending, Page::new(10, 5)).await.unwrap();
    assert!(beyond.is_empty());
    let elsewhere_listed = client
        .list_commands("other", CommandState::Running, Page::default())
        .await
        .unwrap();
    // "other" has its own slot and its command runs (the gate holds it).
    assert_eq!(next_start(&mut starts).await, "elsewhere");
    let elsewhere_listed = if elsewhere_listed.is_empty() {
        client
            .list_commands("other", CommandState::Running, Page::default())
            .await
            .unwrap()
    } else {
        elsewhere_listed
    };
    assert_eq!(ids(&elsewhere_listed), [elsewhere.id()]);
    for id in [sooner.id(), later.id()] {
        client.cancel(id).await.unwrap();
    }
    gated.gate.add_permits(10);
    within("the running command", running).await.unwrap();
    for submitted in pending {
        within("a pending command", submitted).await.unwrap();
    }
    within("the other lane's command", elsewhere).await.unwrap();
    let cancelled = list(CommandState::Cancelled, Page::default())
        .await
        .unwrap();
    assert_eq!(ids(&cancelled), [later.id(), sooner.id()], "newest first");
}

async fn bad_listings_and_retentions_are_refused_at_the_boundary(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let queue = Harness::open(engine, spec).await;
    let client = queue.client();
    for page in [Page::new(0, 0), Page::new(0, Page::MAX_LIMIT + 1)] {
        let error = client
            .list_commands("jobs", CommandState::Pending, page)
            .await
            .unwrap_err();
        assert!(matches!(error, LaneError::InvalidInput(_)), "{error}");
        assert!(error.to_string().contains("page limit"), "{error}");
    }
    let error = client
        .list_commands("nowhere", CommandState::Completed, Page::default())
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::LaneNotFound { .. }), "{error}");
    for retention in [
        Retention::new(1, Duration::ZERO),
        Retention::new(Retention::MAX_KEEP_LAST + 1, Duration::from_secs(1)),
        Retention::new(1, Retention::MAX_KEEP_FOR + Duration::from_secs(1)),
    ] {
        let error = LaneConfig::new(1, 1)
            .with_retention(retention)
            .validate("jobs")
            .unwrap_err();
        assert!(error.to_string().contains("retention"), "{error}");
    }
    drop(queue);
    // The engine refuses such a lane when it is declared.
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane(
        "jobs",
        LaneConfig::new(1, 1).with_retention(Retention::new(1, Duration::ZERO)),
        0,
    );
    let Err(error) = Harness::try_open(engine, spec).await else {
        panic!("a lane with retention keep_for 0 was accepted");
    };
    assert!(error.to_string().contains("keep_for"), "{error}");
}

async fn finished_commands_are_kept_across_a_restart(engine: Engine) {
    let (gated, _starts) = Gated::open();
    let spec = Spec::new(registry("job", gated.handler())).lane("jobs", LaneConfig::new(1, 1), 0);
    let mut queue = Harness::open(engine, spec).await;
    queue.start().await;
    let submitted = queue
        .client()
        .submit("jobs", "job", named("kept"))
        .await
        .unwrap();
    let id = submitted.id();
    within("the command", submitted).await.unwrap();
    queue.restart().await;
    let status = queue
        .client()
        .command(id)
        .await
        .unwrap()
        .expect("kept across the restart");
    assert_eq!(status.state, CommandState::Completed);
    assert_eq!(status.result, Some(named("kept")));
    let listed = queue
        .client()
        .list_commands("jobs", CommandState::Completed, Page::default())
        .await
        .unwrap();
    assert_eq!(ids(&listed), [id]);
    // New commands never reuse a kept command's id.
    queue.start().await;
    let next = queue
        .client()
        .submit("jobs", "job", named("next"))
        .await
        .unwrap();
    assert_ne!(next.id(), id);
    within("the next command", next).await.unwrap();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
