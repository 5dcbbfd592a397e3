//! Groups inside a lane, seen by hand-driven workers: turns, caps over all workers, rate
//! limits, pause, cancel, counts, and a dead worker's runs. Needs a Redis server
//! (A3S_LANE_REDIS_URL); fails without one.

use std::time::Duration;

use lane_core::{GroupLimits, LaneError, Page, RateLimitConfig, SubmitOptions};
use serde_json::json;

use super::Completion;
use super::tests::Fixture;

/// The exchange tests' fixture, with the group test's own submit.
trait SubmitInGroup {
    async fn submit(&self, group: Option<&str>, i: usize) -> u64;
}

impl SubmitInGroup for Fixture {
    async fn submit(&self, group: Option<&str>, i: usize) -> u64 {
        let options = match group {
            Some(group) => SubmitOptions::new().with_group(group),
            None => SubmitOptions::new(),
        };
        self.queue
            .submit_with("jobs", "t", json!(i), options)
            .await
            .unwrap()
            .id()
    }
}

fn ok(id: u64, token: &str) -> Completion {
    Completion {
        id,
        token: token.to_owned(),
        kind: "ok",
        hold: false,
        data: "null".to_owned(),
        delay_us: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_one_command_starts_right_after_the_first_of_a_long_backlog() {
    let fixture = Fixture::with_lane("fair", |lane| lane).await;
    let mut conn = fixture.queue.conn();
    let mut a = Vec::new();
    for i in 0..2000 {
        a.push(fixture.submit(Some("a"), i).await);
    }
    let b = fixture.submit(Some("b"), 0).await;
    let plain = fixture.submit(None, 0).await;
    let w = fixture.worker("worker-a", Duration::from_secs(10));
    let first = w.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    assert_eq!(
        first.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [a[0]]
    );
    let next = w.exchange(&mut conn, &[], 3, true, None).await.unwrap();
    // b's one command, then the commands of no group (a group of their own), then a.
    assert_eq!(
        next.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [b, plain, a[1]]
    );
    let status = fixture.queue.group_status("jobs", "a").await.unwrap();
    assert_eq!((status.pending, status.active), (1998, 2));
    let stats = fixture.queue.stats().await.unwrap();
    assert_eq!(stats.queue.lanes["jobs"].pending, 1998);
    // Alone, a group's commands go in batches again.
    let rest = w.exchange(&mut conn, &[], 6, true, None).await.unwrap();
    assert_eq!(
        rest.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        a[2..8]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_no_group_take_turns_as_a_group_from_when_they_came() {
    let fixture = Fixture::with_lane("ungrouped", |lane| lane).await;
    let mut conn = fixture.queue.conn();
    // Waiting before any group: the commands of no group have the first turn.
    let p1 = fixture.submit(None, 1).await;
    let p2 = fixture.submit(None, 2).await;
    let a1 = fixture.submit(Some("a"), 1).await;
    let a2 = fixture.submit(Some("a"), 2).await;
    let b1 = fixture.submit(Some("b"), 1).await;
    let listed = fixture
        .queue
        .list_commands("jobs", lane_core::CommandState::Pending, Page::default())
        .await
        .unwrap();
    let listed: Vec<u64> = listed.iter().map(|c| c.id).collect();
    assert_eq!(
        listed,
        [p1, a1, b1, p2, a2],
        "listed in the order they start"
    );
    let second_page = fixture
        .queue
        .list_commands("jobs", lane_core::CommandState::Pending, Page::new(3, 2))
        .await
        .unwrap();
    let second_page: Vec<u64> = second_page.iter().map(|c| c.id).collect();
    assert_eq!(second_page, [p2, a2]);
    let w = fixture.worker("worker-a", Duration::from_secs(10));
    let mut order = Vec::new();
    let mut ran = Vec::new();
    for round in 0..5 {
        let reply = w
            .exchange(&mut conn, &[], 1, round > 0, None)
            .await
            .unwrap();
        order.extend(reply.claims.iter().map(|c| c.id));
        ran.extend(reply.claims.iter().map(|c| ok(c.id, &c.token)));
    }
    assert_eq!(order, [p1, a1, b1, p2, a2]);
    // Group a had the last turn: a command of no group coming after a's next ones still
    // starts first.
    let a3 = fixture.submit(Some("a"), 3).await;
    let a4 = fixture.submit(Some("a"), 4).await;
    let p3 = fixture.submit(None, 3).await;
    let reply = w.exchange(&mut conn, &[], 3, true, None).await.unwrap();
    assert_eq!(
        reply.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [p3, a3, a4]
    );
    ran.extend(reply.claims.iter().map(|c| ok(c.id, &c.token)));
    // Their runs end (the lane's cap is 10).
    w.exchange(&mut conn, &ran, 0, true, None).await.unwrap();
    // A lone group's turns after a long run of commands of no group: the group first.
    let mut plain = Vec::new();
    for i in 0..4 {
        plain.push(fixture.submit(None, 10 + i).await);
    }
    let first = w.exchange(&mut conn, &[], 1, true, None).await.unwrap();
    assert_eq!(first.claims[0].id, plain[0]);
    let b2 = fixture.submit(Some("b"), 2).await;
    let listed = fixture
        .queue
        .list_commands("jobs", lane_core::CommandState::Pending, Page::default())
        .await
        .unwrap();
    let listed: Vec<u64> = listed.iter().map(|c| c.id).collect();
    assert_eq!(listed, [b2, plain[1], plain[2], plain[3]]);
    let next = w.exchange(&mut conn, &[], 2, true, None).await.unwrap();
    assert_eq!(
        next.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [b2, plain[1]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_cap_holds_across_workers_and_frees_when_a_run_ends() {
    let fixture = Fixture::with_lane("cap", |lane| {
        lane.with_group_limits(GroupLimits::new().with_max_concurrency(2))
            .with_group_override("big", GroupLimits::new().with_max_concurrency(3))
    })
    .await;
    let mut conn = fixture.queue.conn();
    let mut a = Vec::new();
    for i in 0..5 {
        a.push(fixture.submit(Some("a"), i).await);
    }
    let mut big = Vec::new();
    for i in 0..5 {
        big.push(fixture.submit(Some("big"), i).await);
    }
    let one = fixture.worker("worker-1", Duration::from_secs(10));
    let two = fixture.worker("worker-2", Duration::from_secs(10));
    let first = one.exchange(&mut conn, &[], 3, false, None).await.unwrap();
    assert_eq!(
        first.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [a[0], big[0], a[1]]
    );
    let second = two.exchange(&mut conn, &[], 8, false, None).await.unwrap();
    assert_eq!(
        second.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [big[1], big[2]],
        "a is at its cap of 2 (held by worker 1), big reaches its override's 3"
    );
    let status = fixture.queue.group_status("jobs", "a").await.unwrap();
    assert_eq!(
        (status.pending, status.active, status.max_concurrency),
        (3, 2, Some(2))
    );
    let nothing = two.exchange(&mut conn, &[], 8, true, None).await.unwrap();
    assert!(nothing.claims.is_empty());
    // One of a's runs ends on worker 1: worker 2 may start the next of a.
    let done = ok(first.claims[0].id, &first.claims[0].token);
    one.exchange(&mut conn, &[done], 0, true, None)
        .await
        .unwrap();
    let third = two.exchange(&mut conn, &[], 8, true, None).await.unwrap();
    assert_eq!(
        third.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [a[2]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_rate_limit_spaces_its_starts_without_holding_other_groups() {
    // 5 per second with a burst of 1: a start every 200ms.
    let fixture = Fixture::with_lane("rate", |lane| {
        lane.with_group_limits(
            GroupLimits::new().with_rate_limit(RateLimitConfig::token_bucket(
                5,
                Duration::from_secs(1),
                1,
            )),
        )
    })
    .await;
    let mut conn = fixture.queue.conn();
    let mut a = Vec::new();
    for i in 0..3 {
        a.push(fixture.submit(Some("a"), i).await);
    }
    let b = fixture.submit(Some("b"), 0).await;
    let w = fixture.worker("worker-a", Duration::from_secs(10));
    let started = std::time::Instant::now();
    let first = w.exchange(&mut conn, &[], 8, false, None).await.unwrap();
    assert_eq!(
        first.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [a[0], b],
        "a's second start waits for its permit; b is not held by a's limit"
    );
    assert!(
        first.wait_ms > 0 && first.wait_ms <= 200,
        "the worker looks again when a's permit is due: {} ms",
        first.wait_ms
    );
    let status = fixture.queue.group_status("jobs", "a").await.unwrap();
    assert!(status.throttled, "{status:?}");
    let early = w.exchange(&mut conn, &[], 8, true, None).await.unwrap();
    assert!(early.claims.is_empty());
    let mut starts = vec![started.elapsed()];
    for expected in &a[1..] {
        loop {
            let reply = w.exchange(&mut conn, &[], 8, true, None).await.unwrap();
            if let Some(claim) = reply.claims.first() {
                assert_eq!(reply.claims.len(), 1);
                assert_eq!(claim.id, *expected);
                starts.push(started.elapsed());
                break;
            }
            assert!(reply.wait_ms >= 0, "a throttled group must set a wake-up");
            tokio::time::sleep(Duration::from_millis(reply.wait_ms.max(1) as u64)).await;
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "a's permits never came"
            );
        }
    }
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(180),
            "starts of a are spaced by its rate: {starts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_group_waits_and_a_cancelled_group_ends_everywhere() {
    let fixture = Fixture::with_lane("pause", |lane| lane).await;
    let mut conn = fixture.queue.conn();
    // Paused before it has any command: its submits wait.
    fixture.queue.pause_group("jobs", "b").await.unwrap();
    let b1 = fixture.submit(Some("b"), 1).await;
    let b2 = fixture.submit(Some("b"), 2).await;
    let a1 = fixture.submit(Some("a"), 1).await;
    let w = fixture.worker("worker-a", Duration::from_secs(10));
    let first = w.exchange(&mut conn, &[], 8, false, None).await.unwrap();
    assert_eq!(first.claims.iter().map(|c| c.id).collect::<Vec<_>>(), [a1]);
    let status = fixture.queue.group_status("jobs", "b").await.unwrap();
    assert!(status.paused && status.pending == 2, "{status:?}");
    fixture.queue.resume_group("jobs", "b").await.unwrap();
    let second = w.exchange(&mut conn, &[], 1, true, None).await.unwrap();
    assert_eq!(second.claims.iter().map(|c| c.id).collect::<Vec<_>>(), [b1]);

    // b: one running (b1), one pending (b2), one delayed; a keeps its command.
    let delayed = fixture
        .queue
        .submit_with(
            "jobs",
            "t",
            json!(3),
            SubmitOptions::new()
                .with_group("b")
                .with_delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(fixture.queue.cancel_group("jobs", "b").await.unwrap(), 3);
    let b2_state = fixture.queue.command(b2).await.unwrap().unwrap();
    assert_eq!(b2_state.state, crate::RemoteState::Cancelled);
    let delayed_state = fixture.queue.command(delayed.id()).await.unwrap().unwrap();
    assert_eq!(delayed_state.state, crate::RemoteState::Cancelled);
    let reply = w.exchange(&mut conn, &[], 8, true, None).await.unwrap();
    assert_eq!(reply.cancels, [b1], "the running command is signalled");
    assert!(reply.claims.is_empty());
    assert_eq!(
        fixture.queue.cancel_group("jobs", "nobody").await.unwrap(),
        0
    );
    let stats = fixture.queue.stats().await.unwrap();
    assert_eq!(stats.queue.lanes["jobs"].pending, 0);
    assert_eq!(stats.queue.lanes["jobs"].delayed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_listed_by_key_and_counted() {
    let fixture = Fixture::with_lane("list", |lane| {
        lane.with_group_override("c", GroupLimits::new().with_max_concurrency(4))
    })
    .await;
    let mut conn = fixture.queue.conn();
    fixture.submit(Some("c"), 0).await;
    fixture.submit(Some("c"), 1).await;
    fixture.submit(Some("a"), 0).await;
    fixture.submit(None, 0).await;
    fixture.queue.pause_group("jobs", "b").await.unwrap();
    let w = fixture.worker("worker-a", Duration::from_secs(10));
    let claimed = w.exchange(&mut conn, &[], 1, false, None).await.unwrap();
    assert_eq!(claimed.claims.len(), 1);

    let all = fixture.queue.groups("jobs", Page::default()).await.unwrap();
    let keys: Vec<_> = all.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(
        keys,
        ["a", "b", "c"],
        "sorted, the commands of no group left out"
    );
    let c = &all[2];
    assert_eq!(
        (
            c.lane.as_str(),
            c.pending,
            c.active,
            c.paused,
            c.max_concurrency
        ),
        ("jobs", 1, 1, false, Some(4))
    );
    assert!(all[1].paused);
    let page = fixture.queue.groups("jobs", Page::new(1, 1)).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].group, "b");

    let unknown = fixture.queue.group_status("jobs", "zzz").await.unwrap();
    assert_eq!(
        (
            unknown.pending,
            unknown.active,
            unknown.paused,
            unknown.throttled
        ),
        (0, 0, false, false)
    );
    assert!(matches!(
        fixture.queue.group_status("jobs", "").await,
        Err(LaneError::InvalidInput(_))
    ));
    assert!(matches!(
        fixture.queue.pause_group("jobs", "bad\nkey").await,
        Err(LaneError::InvalidInput(_))
    ));
    assert!(matches!(
        fixture.queue.groups("nope", Page::default()).await,
        Err(LaneError::LaneNotFound { .. })
    ));
    assert!(matches!(
        fixture.queue.cancel_group("nope", "a").await,
        Err(LaneError::LaneNotFound { .. })
    ));
    assert!(matches!(
        fixture
            .queue
            .submit_with("jobs", "t", json!(0), SubmitOptions::new().with_group(""))
            .await,
        Err(LaneError::InvalidInput(_))
    ));
    // Once b is resumed and a's and c's commands ran, nothing is listed.
    fixture.queue.resume_group("jobs", "b").await.unwrap();
    let mut completions = vec![ok(claimed.claims[0].id, &claimed.claims[0].token)];
    loop {
        let reply = w
            .exchange(&mut conn, &completions, 8, true, None)
            .await
            .unwrap();
        completions = reply.claims.iter().map(|c| ok(c.id, &c.token)).collect();
        if completions.is_empty() {
            break;
        }
    }
    assert!(
        fixture
            .queue
            .groups("jobs", Page::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_runs_give_back_their_group_slots_once() {
    let fixture = Fixture::with_lane("dead", |lane| {
        lane.with_group_limits(GroupLimits::new().with_max_concurrency(1))
    })
    .await;
    let mut conn = fixture.queue.conn();
    let a1 = fixture.submit(Some("a"), 1).await;
    let a2 = fixture.submit(Some("a"), 2).await;
    let dying = fixture.worker("worker-dying", Duration::from_millis(200));
    let claimed = dying
        .exchange(&mut conn, &[], 8, false, None)
        .await
        .unwrap();
    assert_eq!(
        claimed.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [a1]
    );
    assert_eq!(
        fixture
            .queue
            .group_status("jobs", "a")
            .await
            .unwrap()
            .active,
        1
    );
    // The worker dies (its lease runs out); the next round trip of another takes its run
    // back: a1 is first in its group again, and the group's slot was given back once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = fixture.worker("worker-other", Duration::from_secs(10));
    let reply = other
        .exchange(&mut conn, &[], 8, false, None)
        .await
        .unwrap();
    assert_eq!(reply.claims.iter().map(|c| c.id).collect::<Vec<_>>(), [a1]);
    let status = fixture.queue.group_status("jobs", "a").await.unwrap();
    assert_eq!((status.pending, status.active), (1, 1), "{status:?}");
    let done = ok(reply.claims[0].id, &reply.claims[0].token);
    let next = other
        .exchange(&mut conn, &[done], 8, true, None)
        .await
        .unwrap();
    assert_eq!(next.claims.iter().map(|c| c.id).collect::<Vec<_>>(), [a2]);

    // A held slot (a handler that ignored its cancel) keeps the group's slot until the
    // handler returns or its worker is gone.
    let a3 = fixture.submit(Some("a"), 3).await;
    let reason = crate::wire::encode_error(&LaneError::Cancelled("stopped".into()));
    let mut held = Completion {
        id: a2,
        token: next.claims[0].token.clone(),
        kind: "cancel",
        hold: true,
        data: reason,
        delay_us: 0,
    };
    held.hold = true;
    let holder = other
        .exchange(&mut conn, &[held], 0, true, None)
        .await
        .unwrap();
    assert!(holder.claims.is_empty());
    assert_eq!(
        fixture
            .queue
            .group_status("jobs", "a")
            .await
            .unwrap()
            .active,
        1
    );
    let freed = Completion {
        id: a2,
        token: String::new(),
        kind: "freed",
        hold: false,
        data: String::new(),
        delay_us: 0,
    };
    let after = other
        .exchange(&mut conn, &[freed], 8, true, None)
        .await
        .unwrap();
    assert_eq!(after.claims.iter().map(|c| c.id).collect::<Vec<_>>(), [a3]);
    let status = fixture.queue.group_status("jobs", "a").await.unwrap();
    assert_eq!((status.pending, status.active), (0, 1), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_redriven_dead_letters_wait_in_their_group_again() {
    let fixture = Fixture::with_lane("retry", |lane| {
        lane.with_group_limits(GroupLimits::new().with_max_concurrency(1))
    })
    .await;
    let mut conn = fixture.queue.conn();
    let a1 = fixture.submit(Some("a"), 1).await;
    let w = fixture.worker("worker-a", Duration::from_secs(10));
    let claimed = w.exchange(&mut conn, &[], 8, false, None).await.unwrap();
    assert_eq!(
        claimed.claims.iter().map(|c| c.id).collect::<Vec<_>>(),
        [a1]
    );
    // A retry after 100ms: the group's slot is free meanwhile, and the retry comes back
    // into the group (its cap of 1 still applies).
    let reason = crate::wire::encode_error(&LaneError::Other("flaky".into()));
    let retry = Completion {
        id: a1,
        token: claimed.claims[0].token.clone(),
        kind: "retry",
        hold: false,
        data: reason.clone(),
        delay_us: 100_000,
    };
    let a2 = fixture.submit(Some("a"), 2).await;
    let reply = w
        .exchange(&mut conn, &[retry], 8, true, None)
        .await
        .unwrap();
    assert_eq!(reply.claims.iter().map(|c| c.id).collect::<Vec<_>>(), [a2]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let held_back = w.exchange(&mut conn, &[], 8, true, None).await.unwrap();
    assert!(held_back.claims.is_empty(), "a is at its cap");
    let status = fixture.queue.group_status("jobs", "a").await.unwrap();
    assert_eq!((status.pending, status.active), (1, 1), "{status:?}");
    let done = ok(a2, &reply.claims[0].token);
    let again = w.exchange(&mut conn, &[done], 8, true, None).await.unwrap();
    assert_eq!(again.claims.iter().map(|c| c.id).collect::<Vec<_>>(), [a1]);
    assert_eq!(again.claims[0].attempt, 2);

    // It fails for good, and is redriven: back in group a.
    let fail = Completion {
        id: a1,
        token: again.claims[0].token.clone(),
        kind: "fail",
        hold: false,
        data: reason,
        delay_us: 0,
    };
    w.exchange(&mut conn, &[fail], 0, true, None).await.unwrap();
    assert!(
        fixture
            .queue
            .groups("jobs", Page::default())
            .await
            .unwrap()
            .is_empty()
    );
    let _redriven = fixture.queue.redrive(a1).await.unwrap();
    let status = fixture.queue.group_status("jobs", "a").await.unwrap();
    assert_eq!((status.pending, status.active), (1, 0), "{status:?}");
    let last = w.exchange(&mut conn, &[], 8, true, None).await.unwrap();
    assert_eq!(last.claims.iter().map(|c| c.id).collect::<Vec<_>>(), [a1]);
}
