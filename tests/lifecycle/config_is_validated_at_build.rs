//! Invalid configuration is a ConfigError that names the lane and the reason.

use a3s_lane::{EventEmitter, LaneConfig, LaneError, QueueManagerBuilder};

use crate::support::builder;

async fn build_error(lanes: &[(&str, LaneConfig, u8)]) -> String {
    match builder(lanes).build().await {
        Ok(_) => panic!("expected a ConfigError"),
        Err(LaneError::ConfigError(reason)) => reason,
        Err(other) => panic!("expected a ConfigError, got {other}"),
    }
}

#[tokio::test]
async fn min_above_max_is_rejected() {
    assert_eq!(
        build_error(&[("a", LaneConfig::new(3, 2), 0)]).await,
        "lane 'a': min_concurrency (3) is greater than max_concurrency (2)"
    );
}

#[tokio::test]
async fn zero_max_is_rejected() {
    assert_eq!(
        build_error(&[("a", LaneConfig::new(0, 0), 0)]).await,
        "lane 'a': max_concurrency must be at least 1"
    );
}

#[tokio::test]
async fn duplicate_lane_ids_are_rejected() {
    assert_eq!(
        build_error(&[
            ("a", LaneConfig::new(1, 1), 0),
            ("a", LaneConfig::new(1, 2), 1)
        ])
        .await,
        "duplicate lane id 'a'"
    );
}

#[tokio::test]
async fn an_empty_lane_id_is_rejected() {
    assert_eq!(
        build_error(&[("", LaneConfig::new(1, 1), 0)]).await,
        "lane id must not be empty"
    );
}

#[tokio::test]
async fn a_zero_global_budget_is_rejected() {
    let error = QueueManagerBuilder::new(EventEmitter::new(8))
        .with_default_lanes()
        .with_max_concurrency(0)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::ConfigError(_)), "{error}");
}

#[tokio::test]
async fn the_default_lanes_match_the_0_3_api() {
    let manager = QueueManagerBuilder::new(EventEmitter::new(8))
        .with_default_lanes()
        .build()
        .await
        .unwrap();
    let stats = manager.stats().await;
    let mut lanes: Vec<(String, u8, usize)> = stats
        .lanes
        .values()
        .map(|l| (l.id.clone(), l.priority, l.max))
        .collect();
    lanes.sort_by_key(|l| l.1);
    let expected = [
        ("system", 0, 5),
        ("control", 1, 3),
        ("query", 2, 10),
        ("session", 3, 5),
        ("skill", 4, 3),
        ("prompt", 5, 2),
    ];
    assert_eq!(lanes, expected.map(|(id, p, m)| (id.to_owned(), p, m)));
}

#[tokio::test]
async fn a_dead_letter_queue_of_size_zero_and_an_oversized_event_capacity_are_rejected() {
    let error = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_default_lanes()
        .with_dlq(0)
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("size 0 keeps nothing"), "{error}");
    let error = QueueManagerBuilder::new(EventEmitter::new(usize::MAX))
        .with_default_lanes()
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("capacity") && error.contains("try_new"),
        "{error}"
    );
}

#[tokio::test]
async fn durations_past_a_hundred_years_are_rejected_naming_the_option() {
    use a3s_lane::{MAX_DURATION, RetryPolicy};
    use std::time::Duration;

    let forever = Duration::MAX;
    let reason = build_error(&[("a", LaneConfig::new(1, 1).with_timeout(forever), 0)]).await;
    assert!(
        reason.contains("lane 'a': timeout") && reason.contains("100 years"),
        "{reason}"
    );
    let reason = build_error(&[("a", LaneConfig::new(1, 1).with_cancel_grace(forever), 0)]).await;
    assert!(reason.contains("cancel_grace"), "{reason}");
    let reason = build_error(&[(
        "a",
        LaneConfig::new(1, 1).with_retry_policy(RetryPolicy::fixed(2, forever)),
        0,
    )])
    .await;
    assert!(reason.contains("retry max_delay"), "{reason}");
    assert!(RetryPolicy::builder().max_delay(forever).build().is_err());
    // The bound itself is fine.
    assert!(
        builder(&[("a", LaneConfig::new(1, 1).with_timeout(MAX_DURATION), 0)])
            .build()
            .await
            .is_ok()
    );
}
