//! Redis itself failing under load: restarted (SIGKILL, SIGTERM), frozen, its
//! connections cut, its replies lost after it acted, slowed down. Each case runs a
//! producer submitting at a steady rate and two workers (their own connections, as
//! separate processes would have) through a fault-injecting proxy in front of a
//! throwaway `redis-server` with AOF fsynced at every write, injects the fault a second
//! in, and checks over every command:
//!
//! - **lost**: accepted, but never finished;
//! - **hung**: a handle still waiting well after Redis is back;
//! - **duplicated**: one submit that became two commands;
//! - **ran twice**: a command whose handler ran to the end more than once;
//! - **ghosts**: a submit reported as not accepted whose command ran anyway (a submit
//!   refused as *in doubt* — Redis may have received it before the connection broke —
//!   is withdrawn when Redis answers, and its error says a run may have started).
//!
//! - **orphaned**: a command Redis shows running once the workers are idle.
//!
//! All must be zero. Each case prints its row of the table (`cargo test -p lane-redis
//! --test faults -- --nocapture`), under the columns: case, submits, accepted, refused, in
//! doubt (of the refused), in doubt and ran, lost, hung, orphaned, duplicated, ran twice, ghosts, recovery (from Redis being back
//! to the first submit accepted after it). Needs
//! `redis-server` on the PATH (it starts its own servers); fails saying so without one.

mod proxy;
mod scenario;
mod server;

use std::time::Duration;

use scenario::{Fault, run};
use server::Stop;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_killed_and_restarted_loses_nothing() {
    run(
        "restart-kill",
        Fault::Restart(Stop::Kill, Duration::from_secs(2)),
        1500,
    )
    .await
    .assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_shut_down_and_restarted_loses_nothing() {
    run(
        "restart-term",
        Fault::Restart(Stop::Terminate, Duration::from_secs(2)),
        1500,
    )
    .await
    .assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_frozen_past_the_response_timeout_loses_nothing() {
    run("freeze", Fault::Freeze(Duration::from_secs(3)), 1500)
        .await
        .assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_connections_lose_nothing() {
    run("cut", Fault::Cut { times: 5 }, 1500)
        .await
        .assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replies_lost_after_redis_acted_lose_nothing() {
    run(
        "lost-replies",
        Fault::DropReplies(Duration::from_millis(500)),
        1500,
    )
    .await
    .assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_network_loses_nothing() {
    run("latency", Fault::Latency(Duration::from_millis(30)), 1500)
        .await
        .assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submits_refused_during_a_long_outage_never_run() {
    // Down longer than the reconnect wait (4 s) plus the response timeout (1 s): some
    // submits fail, and none of them may run once Redis is back.
    let outcome = run(
        "outage",
        Fault::Restart(Stop::Kill, Duration::from_secs(7)),
        4000,
    )
    .await;
    assert!(
        outcome.refused() > 0,
        "the outage outlasted the reconnect wait"
    );
    outcome.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_to_the_replica_loses_nothing() {
    run("failover", Fault::Failover, 1500).await.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_failing_over_to_its_replica_loses_nothing() {
    run("cluster-failover", Fault::ClusterFailover, 1500)
        .await
        .assert_clean();
}

/// A Redis server named `name`, a fault proxy in front of it, a queue through the proxy
/// (lane `jobs`, cap 1) and one straight to the server, both under the key prefix `name`
/// with the given response timeout and reconnect wait.
async fn proxied(
    name: &str,
    response_timeout: Duration,
    reconnect_wait: Duration,
) -> (
    server::RedisServer,
    proxy::FaultProxy,
    a3s_lane::RedisQueue,
    a3s_lane::RedisQueue,
) {
    use a3s_lane::{LaneConfig, RedisQueue, RedisQueueConfig};

    let server = tokio::task::block_in_place(|| server::RedisServer::start(name));
    let proxy = proxy::FaultProxy::start(server.addr).await;
    let config = |url: String| {
        RedisQueueConfig::new(url)
            .with_key_prefix(name)
            .with_response_timeout(response_timeout)
            .with_reconnect_wait(reconnect_wait)
            .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100))
    };
    let queue =
        RedisQueue::connect(config(proxy.url()).with_lane("jobs", LaneConfig::new(1, 1), 0))
            .await
            .unwrap();
    let direct = RedisQueue::connect(config(format!("redis://{}", server.addr)))
        .await
        .unwrap();
    (server, proxy, queue, direct)
}

/// A submit whose reply never came (Redis got it, the reply was lost) fails after the
/// reconnect wait as *in doubt*, and once Redis answers again its command is withdrawn,
/// even if the producer submits nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_given_up_on_is_withdrawn_when_redis_answers() {
    use proxy::Mode;

    let (_server, proxy, queue, direct) = proxied(
        "withdrawn",
        Duration::from_millis(500),
        Duration::from_millis(800),
    )
    .await;

    // One submit through first: Redis then knows the submit script (a NOSCRIPT reply
    // lost with the others would mean the request never ran).
    let _first = queue
        .submit("jobs", "work", serde_json::json!(0))
        .await
        .unwrap();
    proxy.set_mode(Mode::DropReplies);
    let error = queue
        .submit("jobs", "work", serde_json::json!(1))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("may have received it"),
        "{error}"
    );
    // Redis did receive it (the request went through; only replies were lost).
    assert_eq!(direct.stats().await.unwrap().counter("submitted"), 2);

    proxy.set_mode(Mode::Pass);
    proxy.cut();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = direct.stats().await.unwrap();
        if stats.counter("cancelled") == 1 {
            assert_eq!(
                stats.queue.lanes["jobs"].pending, 1,
                "only the first one waits"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the submit given up on was not withdrawn within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A keyed submit whose reply was lost is sent again with the same reference: Redis
/// answers as the first time — the same command, as a duplicate — even though that
/// command ended (and freed its key) meanwhile, so the retry never creates a second
/// command; its result, pushed while replies were lost, still reaches the handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_submit_sent_again_after_a_lost_reply_gets_the_same_answer() {
    use a3s_lane::{LaneError, SubmitOptions};
    use proxy::Mode;

    let (_server, proxy, queue, direct) = proxied(
        "keyed-retry",
        Duration::from_millis(300),
        Duration::from_secs(20),
    )
    .await;
    let keyed = || SubmitOptions::default().with_key("order-1");

    // Through first: Redis knows the script, and the proxied queue's listener runs.
    let _first = queue
        .submit("jobs", "work", serde_json::json!(0))
        .await
        .unwrap();
    // No worker: the keyed command waits.
    let original = direct
        .submit_with("jobs", "work", serde_json::json!(1), keyed())
        .await
        .unwrap();
    assert!(!original.is_duplicate());

    proxy.set_mode(Mode::DropReplies);
    let retried = tokio::spawn({
        let queue = queue.clone();
        async move {
            queue
                .submit_with("jobs", "work", serde_json::json!(2), keyed())
                .await
        }
    });
    // Redis acted on it (the duplicate is counted once, however often it is sent).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while direct.stats().await.unwrap().counter("deduplicated") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the submit never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Sent again at least once more with its reply lost, then the command ends: its
    // key is free, but the reference still answers with it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    direct.cancel(original.id()).await.unwrap();
    proxy.set_mode(Mode::Pass);
    proxy.cut();

    let duplicate = tokio::time::timeout(Duration::from_secs(10), retried)
        .await
        .expect("the submit returns once Redis answers")
        .unwrap()
        .unwrap();
    assert_eq!(duplicate.id(), original.id());
    assert!(duplicate.is_duplicate());
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), duplicate)
            .await
            .unwrap(),
        Err(LaneError::Cancelled(_))
    ));
    let stats = direct.stats().await.unwrap();
    assert_eq!(
        stats.counter("submitted"),
        2,
        "no second command for the key"
    );
    assert_eq!(stats.counter("deduplicated"), 1);
    assert_eq!(
        stats.queue.lanes["jobs"].pending, 1,
        "only the first one waits"
    );
    // The key is free again.
    let fresh = direct
        .submit_with("jobs", "work", serde_json::json!(3), keyed())
        .await
        .unwrap();
    assert!(!fresh.is_duplicate());
    assert_ne!(fresh.id(), original.id());
}
