//! Helpers for the tests that need a Redis server: the Redis engine's tests here, and the
//! facade's conformance suite (`tests/support/mod.rs` includes this file as `redis`).
// Shared between test binaries, not each of which uses every helper; `pub` for them.
#![allow(dead_code, unreachable_pub)]

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
        clear_queue(RedisQueueConfig::new(redis_url()).with_key_prefix(&self.prefix));
    }
}

/// Deletes a queue's keys when dropped (whatever the test's outcome).
pub struct KeysCleanup(pub RedisQueueConfig);

impl Drop for KeysCleanup {
    fn drop(&mut self) {
        clear_queue(self.0.clone());
    }
}

/// Deletes a test queue's keys, on a separate runtime and connection: the test's runtime
/// may be shutting down.
fn clear_queue(config: RedisQueueConfig) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            if let Ok(queue) = RedisQueue::connect(config).await {
                let _ = tokio::time::timeout(Duration::from_secs(5), queue.clear()).await;
            }
        });
    })
    .join();
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

/// The seed nodes of the Redis Cluster the cluster tests use. Without one the test fails
/// (it never skips).
pub fn redis_cluster_urls() -> Vec<String> {
    let urls: Vec<String> = std::env::var("A3S_LANE_REDIS_CLUSTER_URLS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        panic!(
            "A3S_LANE_REDIS_CLUSTER_URLS is not set, and this test needs a Redis Cluster. Run \
             `bash scripts/test.sh` (it starts a throwaway three-node cluster on free ports), \
             or `source scripts/redis.sh && ensure_redis_cluster` in your shell, or set \
             A3S_LANE_REDIS_CLUSTER_URLS=redis://HOST:PORT,redis://HOST:PORT,... to the nodes \
             of a running one."
        );
    }
    urls
}

/// A key prefix and the master node that holds its slot.
#[derive(Debug, Clone)]
pub struct Placed {
    pub prefix: String,
    pub slot: u16,
    /// `host:port` as the cluster announces it.
    pub owner: String,
    /// Whether the node of the first URL in A3S_LANE_REDIS_CLUSTER_URLS holds the slot.
    pub on_first_node: bool,
}

/// A direct (not cluster-aware) connection to the node at `url`.
pub async fn node_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| panic!("connecting to cluster node {url}: {error}"))
}

/// A master node of the test cluster.
#[derive(Debug, Clone)]
pub struct Master {
    /// The slot ranges it holds, inclusive.
    pub ranges: Vec<(u16, u16)>,
    /// `host:port` as the cluster announces it.
    pub address: String,
    pub id: String,
}

/// The masters of the cluster, as the first node sees them.
pub async fn cluster_masters() -> Vec<Master> {
    let mut conn = node_connection(&redis_cluster_urls()[0]).await;
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut masters: Vec<Master> = Vec::new();
    for range in slots {
        let redis::Value::Array(parts) = range else {
            panic!("unexpected CLUSTER SLOTS reply: {range:?}")
        };
        let start: u16 = redis::from_redis_value(parts[0].clone()).unwrap();
        let end: u16 = redis::from_redis_value(parts[1].clone()).unwrap();
        // [host, port, id, (Redis 7: metadata)]
        let redis::Value::Array(node) = parts[2].clone() else {
            panic!("unexpected CLUSTER SLOTS node: {:?}", parts[2])
        };
        let host: String = redis::from_redis_value(node[0].clone()).unwrap();
        let port: u16 = redis::from_redis_value(node[1].clone()).unwrap();
        let id: String = redis::from_redis_value(node[2].clone()).unwrap();
        let address = format!("{host}:{port}");
        match masters.iter_mut().find(|master| master.id == id) {
            Some(master) => master.ranges.push((start, end)),
            None => masters.push(Master {
                ranges: vec![(start, end)],
                address,
                id,
            }),
        }
    }
    masters
}

/// Unique prefixes for `test`, one on each master of the cluster, so a test using all of
/// them needs commands routed to every node. Checks that at least one lives on a node
/// other than the first URL's, and that a plain connection to the first node is
/// redirected (MOVED) for it: the queue can only work there by following the cluster.
pub async fn prefixes_on_every_node(test: &str) -> Vec<Placed> {
    let urls = redis_cluster_urls();
    let masters = cluster_masters().await;
    assert!(
        masters.len() >= 2,
        "the test cluster needs at least two masters to check routing; it has {masters:?}"
    );
    let mut first = node_connection(&urls[0]).await;
    let first_id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(&mut first)
        .await
        .unwrap();
    let base = unique_prefix(test);
    let mut placed: Vec<Placed> = Vec::new();
    for i in 0.. {
        if placed.len() == masters.len() {
            break;
        }
        assert!(i < 10_000, "no prefix found for every master: {placed:?}");
        let prefix = format!("{base}-{i}");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("{{{prefix}}}"))
            .query_async(&mut first)
            .await
            .unwrap();
        let owner = masters
            .iter()
            .find(|master| master.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .unwrap_or_else(|| panic!("no master holds slot {slot}: {masters:?}"));
        if placed.iter().all(|p| p.owner != owner.address) {
            placed.push(Placed {
                prefix,
                slot,
                owner: owner.address.clone(),
                on_first_node: owner.id == first_id,
            });
        }
    }
    let remote = placed
        .iter()
        .find(|p| !p.on_first_node)
        .expect("a prefix on a node other than the first URL's");
    let redirected = redis::cmd("EXISTS")
        .arg(format!("{{{}}}:lanes", remote.prefix))
        .query_async::<i64>(&mut first)
        .await
        .expect_err("the first node must redirect a key of another node's slot");
    assert_eq!(
        redirected.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::Moved),
        "{redirected}"
    );
    placed
}

/// A unique prefix whose slot is on a node other than the first URL's.
pub async fn prefix_off_the_first_node(test: &str) -> Placed {
    prefixes_on_every_node(test)
        .await
        .into_iter()
        .find(|p| !p.on_first_node)
        .unwrap()
}

/// A queue on the test cluster under `prefix`; its keys are deleted on drop.
pub struct ClusterQueue {
    pub queue: RedisQueue,
    pub prefix: String,
}

impl ClusterQueue {
    /// Connects with `configure` applied to a cluster config carrying `prefix`.
    pub async fn connect(
        prefix: &str,
        configure: impl FnOnce(RedisQueueConfig) -> RedisQueueConfig,
    ) -> Self {
        let config =
            configure(RedisQueueConfig::cluster(redis_cluster_urls()).with_key_prefix(prefix));
        let queue = RedisQueue::connect(config)
            .await
            .expect("connecting to the test Redis Cluster");
        Self {
            queue,
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for ClusterQueue {
    fn drop(&mut self) {
        clear_queue(RedisQueueConfig::cluster(redis_cluster_urls()).with_key_prefix(&self.prefix));
    }
}
