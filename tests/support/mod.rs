//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub)]

/// The Redis test server's helpers; they live with the Redis engine's own tests.
#[cfg(feature = "redis")]
#[path = "../../crates/lane-redis/tests/redis/support.rs"]
pub mod redis;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    Command, EventEmitter, Handler, LaneConfig, LocalStorage, QueueManager, QueueManagerBuilder,
    Result, Storage,
};
use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Start order of commands, shared by the commands that append to it.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, entry: impl Into<String>) {
        self.0.lock().push(entry.into());
    }
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

/// A command that logs its name when it starts, then waits for a permit from `gate`
/// (if any) before returning its name.
pub struct Probe {
    pub name: String,
    pub log: Log,
    pub gate: Option<Arc<Semaphore>>,
}

impl Probe {
    pub fn new(name: impl Into<String>, log: &Log) -> Box<Self> {
        Box::new(Self {
            name: name.into(),
            log: log.clone(),
            gate: None,
        })
    }
    pub fn gated(name: impl Into<String>, log: &Log, gate: &Arc<Semaphore>) -> Box<Self> {
        Box::new(Self {
            name: name.into(),
            log: log.clone(),
            gate: Some(gate.clone()),
        })
    }
}

#[async_trait]
impl Command for Probe {
    async fn execute(&self) -> Result<Value> {
        self.log.push(self.name.clone());
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate closed").forget();
        }
        Ok(json!(self.name))
    }
    fn command_type(&self) -> &str {
        "probe"
    }
}

/// Sleeps for its duration (virtual time in paused tests).
pub struct Sleep(pub Duration);

#[async_trait]
impl Command for Sleep {
    async fn execute(&self) -> Result<Value> {
        tokio::time::sleep(self.0).await;
        Ok(json!("slept"))
    }
    fn command_type(&self) -> &str {
        "sleep"
    }
}

/// Builds and starts a manager with the given lanes.
pub async fn started(lanes: &[(&str, LaneConfig, u8)]) -> QueueManager {
    let manager = builder(lanes).build().await.expect("valid config");
    manager.start().await.expect("start");
    manager
}

pub fn builder(lanes: &[(&str, LaneConfig, u8)]) -> QueueManagerBuilder {
    lanes.iter().fold(
        QueueManagerBuilder::new(EventEmitter::new(1024)),
        |b, (id, config, priority)| b.with_lane(*id, config.clone(), *priority),
    )
}

/// Lets the runtime run every task that is ready (enough for chains of wake-ups).
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A builder with one lane `work` (priority 0, `max` concurrent) on a fresh emitter.
pub fn one_lane(config: LaneConfig) -> QueueManagerBuilder {
    QueueManagerBuilder::new(EventEmitter::new(1024)).with_lane("work", config, 0)
}

/// Opens the store in `dir` with default options.
pub async fn storage(dir: &Path) -> Arc<LocalStorage> {
    Arc::new(LocalStorage::new(dir).await.expect("open store"))
}

/// Builds, starts, and returns a manager over the store in `dir`, with `handler` registered
/// for type `job`, one lane `work` and a dead letter queue of `dlq` letters.
pub async fn durable_manager(
    dir: &Path,
    config: LaneConfig,
    dlq: usize,
    handler: impl Handler,
) -> (QueueManager, Arc<LocalStorage>) {
    let store = storage(dir).await;
    let manager = one_lane(config)
        .with_storage(store.clone())
        .with_dlq(dlq)
        .with_handler("job", handler)
        .build()
        .await
        .expect("build");
    manager.start().await.expect("start");
    (manager, store)
}

/// Stops `manager` gracefully and waits for it (and its journal) to settle.
pub async fn stop_and_drain(manager: &QueueManager) {
    manager.shutdown().await;
    manager
        .drain(Duration::from_secs(30))
        .await
        .expect("drain within 30 s");
}

/// The `n` field of every stored command, in store order.
pub async fn stored_ns(store: &dyn Storage) -> Vec<u64> {
    store
        .load_commands()
        .await
        .expect("load")
        .iter()
        .map(|c| c.payload["n"].as_u64().expect("payload n"))
        .collect()
}

/// A shared log of values, for recording what handlers saw.
#[derive(Debug, Clone, Default)]
pub struct ValueLog(Arc<Mutex<Vec<Value>>>);

impl ValueLog {
    pub fn push(&self, value: Value) {
        self.0.lock().push(value);
    }
    pub fn values(&self) -> Vec<Value> {
        self.0.lock().clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }
}
