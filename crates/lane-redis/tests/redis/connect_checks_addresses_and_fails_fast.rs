//! Where a Redis queue connects is checked before connecting, and an address nothing
//! listens on fails the connect at once with an error naming it. Needs no Redis.

use std::time::Duration;

use a3s_lane::{LaneError, RedisQueue, RedisQueueConfig};

fn config_error(config: &RedisQueueConfig) -> String {
    match config.validate() {
        Err(LaneError::ConfigError(reason)) => reason,
        other => panic!("expected a ConfigError, got {other:?}"),
    }
}

/// A loopback port that was free a moment ago and has nothing listening on it now.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_cluster_needs_at_least_one_node() {
    let reason = config_error(&RedisQueueConfig::cluster(Vec::<String>::new()));
    assert!(reason.contains("at least one of its nodes"), "{reason}");
}

#[test]
fn bad_node_urls_are_named() {
    let reason = config_error(&RedisQueueConfig::cluster([
        "redis://127.0.0.1:7000",
        "http://127.0.0.1:7001",
    ]));
    assert!(
        reason.contains("'http://127.0.0.1:7001'") && reason.contains("redis://"),
        "{reason}"
    );
    let reason = config_error(&RedisQueueConfig::cluster(["redis://127.0.0.1:7000/2"]));
    assert!(reason.contains("only database 0"), "{reason}");
    let reason = config_error(&RedisQueueConfig::cluster(["redis+unix:///tmp/redis.sock"]));
    assert!(reason.contains("Unix socket"), "{reason}");
    let reason = config_error(&RedisQueueConfig::new("localhost:6379"));
    assert!(reason.contains("'localhost:6379'"), "{reason}");
}

#[test]
fn a_zero_connect_timeout_is_rejected() {
    let config =
        RedisQueueConfig::new("redis://127.0.0.1:6379").with_connect_timeout(Duration::ZERO);
    assert_eq!(
        config_error(&config),
        "connect_timeout must be longer than zero"
    );
}

#[tokio::test]
async fn connect_rejects_a_bad_config_before_connecting() {
    let error = RedisQueue::connect(RedisQueueConfig::cluster(Vec::<String>::new()))
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::ConfigError(_)), "{error:?}");
}

#[tokio::test]
async fn a_server_where_nothing_listens_fails_the_connect_naming_its_address() {
    let port = closed_port();
    let config = RedisQueueConfig::new(format!("redis://127.0.0.1:{port}"))
        .with_connect_timeout(Duration::from_secs(2));
    match RedisQueue::connect(config).await {
        Err(LaneError::Storage(message)) => assert!(
            message.contains(&format!("127.0.0.1:{port}"))
                && message.contains("check that a Redis server listens there"),
            "{message}"
        ),
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cluster_where_nothing_listens_fails_the_connect_naming_its_nodes() {
    let (first, second) = (closed_port(), closed_port());
    let config = RedisQueueConfig::cluster([
        format!("redis://127.0.0.1:{first}"),
        format!("redis://127.0.0.1:{second}"),
    ])
    .with_connect_timeout(Duration::from_secs(2));
    match RedisQueue::connect(config).await {
        Err(LaneError::Storage(message)) => assert!(
            message.contains(&format!("127.0.0.1:{first}, 127.0.0.1:{second}"))
                && message.contains("cluster_state:ok"),
            "{message}"
        ),
        other => panic!("expected a storage error, got {other:?}"),
    }
}
