//! Helpers for the tests that need a Redis server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use a3s_lane::{RedisQueue, RedisQueueConfig};

/// The Redis server the tests use. Without one the test fails (it never skips).
pub fn redis_url() -> String {
    match std::env::var("A3S_LANE_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "A3S_LANE_REDIS_URL is not set, and this test needs a Redis server. Run \
             `bash scripts/test.sh` (it starts a throwaway redis-server on a free port), or \
             set A3S_LANE_REDIS_URL=redis://HOST:PORT to use a running one."
        ),
    }
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("a3s-test-{test}-{}-{nanos}", std::process::id())
}

/// A queue on the test server under a unique prefix; its keys are deleted on drop.
pub struct TestQueue {
    pub queue: RedisQueue,
    pub prefix: String,
}

impl TestQueue {
    /// Connects with `configure` applied to a config carrying the unique prefix.
    pub async fn connect(
        test: &str,
        configure: impl FnOnce(RedisQueueConfig) -> RedisQueueConfig,
    ) -> Self {
        let prefix = unique_prefix(test);
        let config = configure(RedisQueueConfig::new(redis_url()).with_key_prefix(&prefix));
        let queue = RedisQueue::connect(config)
            .await
            .expect("connecting to the test Redis");
        Self { queue, prefix }
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        // On a separate runtime and connection: the test's runtime may be shutting down.
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = RedisQueueConfig::new(redis_url()).with_key_prefix(prefix);
                if let Ok(queue) = RedisQueue::connect(config).await {
                    let _ = tokio::time::timeout(Duration::from_secs(5), queue.clear()).await;
                }
            });
        })
        .join();
    }
}

/// Waits for `condition` to hold, checking whenever `tick` elapses, failing after `limit`.
/// Used only to wait for effects in other processes or on the Redis server.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
