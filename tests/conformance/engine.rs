//! The engines the conformance suite runs every behaviour on, behind one harness.
//!
//! A behaviour opens a queue with [`Harness::open`] (lanes, handlers, how many commands
//! the runner may start at once), submits through the [`QueueClient`] it gets, and
//! starts the runner when it wants commands to run ([`Harness::start`]): the in-process
//! queue's `start`, or a Redis worker.

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    EventEmitter, HandlerRegistry, LaneConfig, LocalStorage, QueueClient, QueueManager,
    QueueManagerBuilder, RedisQueue, RedisQueueConfig, RedisWorker, RedisWorkerConfig,
};
use tempfile::TempDir;

use crate::support::redis::{KeysCleanup, redis_cluster_urls, redis_url, unique_prefix};

/// An engine of the one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `QueueManager`, in memory.
    InProcess,
    /// `QueueManager` with `LocalStorage` (a real SQLite file).
    LocalStorage,
    /// `RedisQueue` and a `RedisWorker` on one Redis server.
    Redis,
    /// `RedisQueue` and a `RedisWorker` on a Redis Cluster.
    RedisCluster,
}

impl Engine {
    pub fn is_redis(self) -> bool {
        matches!(self, Self::Redis | Self::RedisCluster)
    }
}

/// What a behaviour needs of a queue.
pub struct Spec {
    pub lanes: Vec<(&'static str, LaneConfig, u8)>,
    pub handlers: HandlerRegistry,
    /// How many commands run at once over all lanes: the global budget in process, the
    /// worker's slots on Redis.
    pub runner_slots: usize,
    /// Dead letters kept (in process; Redis keeps them all).
    pub dead_letters: usize,
}

impl Spec {
    pub fn new(handlers: HandlerRegistry) -> Self {
        Self {
            lanes: Vec::new(),
            handlers,
            runner_slots: 16,
            dead_letters: 100,
        }
    }

    pub fn lane(mut self, id: &'static str, config: LaneConfig, priority: u8) -> Self {
        self.lanes.push((id, config, priority));
        self
    }

    pub fn runner_slots(mut self, slots: usize) -> Self {
        self.runner_slots = slots;
        self
    }
}

enum Running {
    InProcess(QueueManager),
    Redis {
        queue: RedisQueue,
        worker: Option<RedisWorker>,
    },
}

/// One queue of one engine, for one test. Its Redis keys and storage directory are
/// deleted when it is dropped.
pub struct Harness {
    pub engine: Engine,
    spec: Spec,
    running: Running,
    /// The storage directory (LocalStorage) or key prefix (Redis) that outlives a restart.
    dir: Option<TempDir>,
    prefix: String,
    _cleanup: Option<KeysCleanup>,
}

impl Harness {
    /// Opens a queue of `engine` as `spec` says; nothing runs until [`Harness::start`].
    pub async fn open(engine: Engine, spec: Spec) -> Self {
        Self::try_open(engine, spec).await.unwrap()
    }

    /// [`Harness::open`], returning what the engine refused.
    pub async fn try_open(engine: Engine, spec: Spec) -> a3s_lane::Result<Self> {
        let dir = (engine == Engine::LocalStorage).then(|| TempDir::new().unwrap());
        let prefix = unique_prefix("conformance");
        let mut harness = Self {
            engine,
            running: Running::InProcess(
                QueueManagerBuilder::new(EventEmitter::new(16))
                    .build()
                    .await
                    .unwrap(),
            ),
            spec,
            dir,
            prefix,
            _cleanup: None,
        };
        if engine.is_redis() {
            // Deletes the queue's keys when the test ends, whatever its outcome.
            harness._cleanup = Some(KeysCleanup(
                harness.redis_config().with_key_prefix(&harness.prefix),
            ));
        }
        harness.running = harness.try_connect().await?;
        Ok(harness)
    }

    async fn connect(&self) -> Running {
        self.try_connect().await.unwrap()
    }

    async fn try_connect(&self) -> a3s_lane::Result<Running> {
        match self.engine {
            Engine::InProcess | Engine::LocalStorage => {
                let mut builder = QueueManagerBuilder::new(EventEmitter::new(1024))
                    .with_max_concurrency(self.spec.runner_slots)
                    .with_dlq(self.spec.dead_letters);
                for (id, config, priority) in &self.spec.lanes {
                    builder = builder.with_lane(*id, config.clone(), *priority);
                }
                if let Some(dir) = &self.dir {
                    let storage = LocalStorage::new(dir.path().to_path_buf()).await.unwrap();
                    builder = builder.with_storage(Arc::new(storage));
                }
                let manager = builder.build().await?;
                for command_type in self.spec.handlers.command_types() {
                    let handler = self.spec.handlers.get(&command_type).unwrap();
                    manager
                        .queue()
                        .handlers()
                        .register_arc(command_type, handler);
                }
                Ok(Running::InProcess(manager))
            }
            Engine::Redis | Engine::RedisCluster => {
                let mut config = self.redis_config().with_key_prefix(&self.prefix);
                for (id, lane, priority) in &self.spec.lanes {
                    config = config.with_lane(*id, lane.clone(), *priority);
                }
                let queue = RedisQueue::connect(config).await?;
                Ok(Running::Redis {
                    queue,
                    worker: None,
                })
            }
        }
    }

    fn redis_config(&self) -> RedisQueueConfig {
        match self.engine {
            Engine::RedisCluster => RedisQueueConfig::cluster(redis_cluster_urls()),
            _ => RedisQueueConfig::new(redis_url()),
        }
    }

    /// The client surface of this queue.
    pub fn client(&self) -> &dyn QueueClient {
        match &self.running {
            Running::InProcess(manager) => manager,
            Running::Redis { queue, .. } => queue,
        }
    }

    /// Another client of the same queue, as another process would open it: on Redis a
    /// second connection (declaring no lanes); in process the queue itself.
    pub async fn another_client(&self) -> Box<dyn QueueClient> {
        match &self.running {
            Running::InProcess(manager) => Box::new(manager.clone()),
            Running::Redis { .. } => {
                let config = self.redis_config().with_key_prefix(&self.prefix);
                Box::new(RedisQueue::connect(config).await.unwrap())
            }
        }
    }

    /// Starts running commands.
    pub async fn start(&mut self) {
        match &mut self.running {
            Running::InProcess(manager) => manager.start().await.unwrap(),
            Running::Redis { queue, worker } => {
                let config = RedisWorkerConfig::new(self.spec.runner_slots)
                    .with_lease_ttl(Duration::from_secs(5))
                    .with_block_timeout(Duration::from_secs(1));
                *worker = Some(
                    RedisWorker::start(queue, self.spec.handlers.clone(), config)
                        .await
                        .unwrap(),
                );
            }
        }
    }

    /// Stops taking new work and waits until what runs has finished.
    pub async fn drain(&mut self, limit: Duration) {
        match &mut self.running {
            Running::InProcess(manager) => manager.drain(limit).await.unwrap(),
            Running::Redis { worker, .. } => {
                if let Some(worker) = worker.take() {
                    worker.shutdown(limit).await.unwrap();
                }
            }
        }
    }

    /// Simulates a process restart: everything in memory is dropped (running commands
    /// are handed back), and a new queue is opened on the same storage or Redis keys.
    /// Only for engines that keep commands outside the process.
    pub async fn restart(&mut self) {
        assert_ne!(
            self.engine,
            Engine::InProcess,
            "an in-memory queue keeps nothing across a restart"
        );
        match &mut self.running {
            Running::InProcess(manager) => {
                manager.shutdown_now().await;
                manager.drain(Duration::from_secs(10)).await.unwrap();
            }
            Running::Redis { worker, .. } => {
                if let Some(worker) = worker.take() {
                    worker.shutdown_now().await;
                }
            }
        }
        // Close the old queue (and its store) before the new one opens the same files.
        let placeholder = Running::InProcess(
            QueueManagerBuilder::new(EventEmitter::new(16))
                .build()
                .await
                .unwrap(),
        );
        drop(std::mem::replace(&mut self.running, placeholder));
        self.running = self.connect().await;
    }
}
