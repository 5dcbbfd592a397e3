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
