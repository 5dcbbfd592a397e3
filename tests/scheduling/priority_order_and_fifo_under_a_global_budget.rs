//! Strict priority between lanes, FIFO inside a lane, round robin between equal priorities,
//! and per-lane caps, observed with a global budget.

use std::sync::Arc;

use a3s_lane::{EventEmitter, LaneConfig, QueueManagerBuilder};
use tokio::sync::Semaphore;

use crate::support::{self, Log, Probe, builder, settle};

#[tokio::test]
async fn with_a_budget_of_one_commands_start_in_priority_then_fifo_order() {
    let log = Log::default();
    let manager = builder(&[
        ("prompt", LaneConfig::new(0, 2), 5),
        ("query", LaneConfig::new(0, 10), 2),
        ("control", LaneConfig::new(0, 3), 1),
    ])
    .with_max_concurrency(1)
    .build()
    .await
    .unwrap();
    let mut receivers = Vec::new();
    for (lane, name) in [
        ("prompt", "p1"),
        ("query", "q1"),
        ("prompt", "p2"),
        ("control", "c1"),
        ("query", "q2"),
        ("control", "c2"),
    ] {
        receivers.push(manager.submit(lane, Probe::new(name, &log)).await.unwrap());
    }
    manager.start().await.unwrap();
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
    assert_eq!(log.entries(), ["c1", "c2", "q1", "q2", "p1", "p2"]);
}

#[tokio::test]
async fn a_budget_smaller_than_the_reserved_slots_is_a_config_error() {
    let error = QueueManagerBuilder::new(EventEmitter::new(64))
        .with_default_lanes()
        .with_max_concurrency(5)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(error, a3s_lane::LaneError::ConfigError(_)),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("min_concurrency would add up to 6"),
        "{error}"
    );
}

#[tokio::test]
async fn equal_priority_lanes_take_turns() {
    let log = Log::default();
    let manager = builder(&[
        ("a", LaneConfig::new(0, 5), 1),
        ("b", LaneConfig::new(0, 5), 1),
    ])
    .with_max_concurrency(1)
    .build()
    .await
    .unwrap();
    let mut receivers = Vec::new();
    for name in ["a1", "a2", "a3"] {
        receivers.push(manager.submit("a", Probe::new(name, &log)).await.unwrap());
    }
    for name in ["b1", "b2", "b3"] {
        receivers.push(manager.submit("b", Probe::new(name, &log)).await.unwrap());
    }
    manager.start().await.unwrap();
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
    assert_eq!(log.entries(), ["a1", "b1", "a2", "b2", "a3", "b3"]);
}

#[tokio::test]
async fn reserved_slots_let_a_low_priority_lane_run_while_the_shared_pool_is_taken() {
    let log = Log::default();
    let gate = Arc::new(Semaphore::new(0));
    // Budget 3: "bulk" reserves 1, "urgent" reserves 0; the shared pool is 2.
    let manager = builder(&[
        ("urgent", LaneConfig::new(0, 10), 0),
        ("bulk", LaneConfig::new(1, 10), 9),
    ])
    .with_max_concurrency(3)
    .build()
    .await
    .unwrap();
    manager.start().await.unwrap();
    let mut receivers = Vec::new();
    for i in 0..5 {
        receivers.push(
            manager
                .submit("urgent", Probe::gated(format!("u{i}"), &log, &gate))
                .await
                .unwrap(),
        );
    }
    receivers.push(
        manager
            .submit("bulk", Probe::gated("b0", &log, &gate))
            .await
            .unwrap(),
    );
    settle().await;
    let stats = manager.stats().await;
    assert_eq!(
        stats.lanes["urgent"].active, 2,
        "urgent uses exactly the shared pool"
    );
    assert_eq!(
        stats.lanes["bulk"].active, 1,
        "bulk runs on its reserved slot"
    );
    assert_eq!(stats.total_active, 3);
    gate.add_permits(100);
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_lane_never_runs_more_than_its_max() {
    let log = Log::default();
    let gate = Arc::new(Semaphore::new(0));
    let manager = support::started(&[("narrow", LaneConfig::new(1, 2), 0)]).await;
    let mut receivers = Vec::new();
    for i in 0..6 {
        receivers.push(
            manager
                .submit("narrow", Probe::gated(format!("n{i}"), &log, &gate))
                .await
                .unwrap(),
        );
    }
    settle().await;
    assert_eq!(log.entries().len(), 2);
    let status = manager.queue().lane_status("narrow").unwrap();
    assert_eq!((status.active, status.pending), (2, 4));
    gate.add_permits(1);
    settle().await;
    assert_eq!(
        log.entries().len(),
        3,
        "one finished, exactly one more started"
    );
    gate.add_permits(100);
    for rx in receivers {
        rx.await.unwrap().unwrap();
    }
    assert_eq!(log.entries(), ["n0", "n1", "n2", "n3", "n4", "n5"]);
}

#[tokio::test]
async fn a_lane_without_reserved_slots_needs_a_shared_slot() {
    let error = builder(&[
        ("a", LaneConfig::new(2, 4), 0),
        ("b", LaneConfig::new(0, 4), 1),
    ])
    .with_max_concurrency(2)
    .build()
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("lane 'b' has min_concurrency 0"),
        "{error}"
    );
}
