//! # a3s-lane
//!
//! A lane-based priority command queue for async Rust. Commands go into named lanes;
//! each lane has a priority and concurrency limits; the scheduler always starts work from
//! the most urgent lane that has pending work and free capacity.
//!
//! ```
//! use a3s_lane::{Command, EventEmitter, QueueManagerBuilder, Result};
//! use async_trait::async_trait;
//!
//! struct Hello;
//!
//! #[async_trait]
//! impl Command for Hello {
//!     async fn execute(&self) -> Result<serde_json::Value> {
//!         Ok(serde_json::json!("hello"))
//!     }
//!     fn command_type(&self) -> &str {
//!         "hello"
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
//! let manager = QueueManagerBuilder::new(EventEmitter::new(100)).with_default_lanes().build().await?;
//! manager.start().await?;
//! let rx = manager.submit("query", Box::new(Hello)).await?;
//! assert_eq!(rx.await??, serde_json::json!("hello"));
//! # Ok(()) }
//! ```
//!
//! ## What is where
//!
//! Everything is re-exported here by name; the crates behind it are layers, not APIs to
//! learn separately. Without any feature: the queue, lanes and their configuration,
//! commands and handlers, events, dead letters, the policies (retry, rate limit, priority
//! boost) and the extension traits (`lane-core`).
//!
//! ## Feature flags
//!
//! Every feature is on by default; `default-features = false` gives the core queue alone
//! and compiles neither SQLite nor a Redis client.
//!
//! | Feature | Default | Adds | Crate |
//! |---|---|---|---|
//! | `sqlite` | yes | `LocalStorage`, the durable store (SQLite, bundled and compiled from C) | `lane-reliability` |
//! | `redis` | yes | `RedisQueue` and `RedisWorker`, the Redis engine (Redis, Cluster, Sentinel, TLS) | `lane-redis` |
//! | `metrics` | yes | `QueueMetrics`, latency histograms, Prometheus text | `lane-metrics` |
//! | `monitoring` | yes | `AlertManager` and `QueueMonitor` (implies `metrics`) | `lane-metrics` |
//! | `telemetry` | yes | OpenTelemetry export over OTLP/HTTP (implies `metrics`) | `lane-telemetry` |
//! | `distributed` | yes | partitioning: `PartitionConfig`, `LocalDistributedQueue` | `lane-distributed` |
//!
//! For example, the core queue with the durable store only:
//!
//! ```sh
//! cargo add a3s-lane --no-default-features --features sqlite
//! ```

#![forbid(unsafe_code)]

mod defaults;

pub use defaults::defaults;

pub use lane_core::{
    AbandonedRun, Admission, AdmissionPolicy, BudgetStatus, CancelOutcome, CancelTrigger, Command,
    CommandContext, CommandFailure, CommandHandle, CommandId, CommandInfo, CommandQueue,
    CommandRunner, CommandState, CommandStatus, DEFAULT_CANCEL_GRACE, DEFAULT_EVENT_CAPACITY,
    DEFAULT_LANES, DeadLetter, DeadLetterQueue, Due, EventEmitter, EventStream, EventStreamClosed,
    Every, FnCommand, FnHandler, GroupLimits, GroupRules, GroupStatus, Handler, HandlerRegistry,
    IntoObserver, LaneConfig, LaneError, LaneEvent, LaneStatus, MAX_DURATION, MAX_EVENT_CAPACITY,
    MAX_GROUP_BYTES, MAX_JITTER, MAX_KEY_BYTES, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH,
    MAX_SCHEDULE_NAME_BYTES, MAX_TIMED_PAUSE, MISSED_GRACE, Missed, Observer, PAST_TOLERANCE, Page,
    PriorityBoost, PriorityBoostConfig, QueueClient, QueueManager, QueueManagerBuilder, QueueProbe,
    QueueStats, RateLimitConfig, Result, Retention, RetryJitter, RetryPolicy, RetryPolicyBuilder,
    RetryStrategy, RunEnd, RunLimits, RunOutcome, Schedule, ScheduleInfo, SharedBudget, Spawner,
    Storage, StorageOp, StoredCommand, StoredDeadLetter, StoredFinished, SubmitOptions,
    SubmittedCommand, Timing, WhenFull, check_group, check_payload, check_schedule_name,
    command_fn, event_keys, handler_fn, supervise, supervise_keeping_slot, validate_timed_pause,
};

/// Feature `sqlite` (on by default): the embedded durable store.
#[cfg(feature = "sqlite")]
pub use lane_reliability::{
    LOCAL_STORAGE_FILE, LocalStorage, LocalStorageConfig, LocalStorageSnapshot, LocalSyncMode,
    SalvageReport, UnreadableRows,
};

/// Feature `redis` (on by default): the Redis engine.
#[cfg(feature = "redis")]
pub use lane_redis::{
    RedisCommandHandle, RedisQueue, RedisQueueConfig, RedisQueueStats, RedisTls, RedisWorker,
    RedisWorkerConfig, RemoteCommand, RemoteState,
};

/// Feature `metrics` (on by default): metrics and Prometheus text.
#[cfg(feature = "metrics")]
pub use lane_metrics::{
    GroupMetricsConfig, GroupMetricsSnapshot, HistogramStats, LaneCounter, LaneGauge,
    LaneGroupsSnapshot, LaneHistogram, LaneMetricsSnapshot, LocalMetrics, MetricsBackend,
    MetricsRecorder, MetricsSnapshot, ObservabilityExt, Percentiles, QueueMetrics, WatchedQueues,
    group_metric_names, metric_names,
};

/// Feature `monitoring` (on by default): alerts and the queue monitor.
#[cfg(feature = "monitoring")]
pub use lane_metrics::{
    Alert, AlertKind, AlertLevel, AlertManager, DEFAULT_ALERT_RECOVERY_WINDOW, LatencyAlertConfig,
    MonitorConfig, QueueDepthAlertConfig, QueueMonitor,
};

/// Feature `telemetry` (on by default): OpenTelemetry export over OTLP.
#[cfg(feature = "telemetry")]
pub use lane_telemetry::{
    DEFAULT_OTLP_ENDPOINT, LATENCY_BUCKETS_MS, OtelMetricsBackend, OtlpConfig, OtlpTracing,
    TelemetryError,
};

/// Feature `distributed` (on by default): partitioning.
#[cfg(feature = "distributed")]
pub use lane_distributed::{
    CommandEnvelope, CommandResult, DistributedQueue, LocalDistributedQueue, PartitionConfig,
    PartitionId, PartitionRouter, PartitionStrategy, PartitionWorkers, Partitioner, WorkerId,
    hash_partition, stable_hash,
};

// The user guide (docs/guide, an mdBook): every Rust sample of its chapters is a doc test
// of this crate (`cargo test -p a3s-lane --doc`); its Python and JavaScript samples are
// run by docs/guide/check_samples.py.
#[cfg(doctest)]
#[doc = include_str!("../docs/guide/src/introduction.md")]
mod guide_introduction {}
#[cfg(doctest)]
#[doc = include_str!("../docs/guide/src/concepts.md")]
mod guide_concepts {}
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../docs/guide/src/guarantees.md")]
mod guide_guarantees {}
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../docs/guide/src/redis.md")]
mod guide_redis {}
#[cfg(doctest)]
#[doc = include_str!("../docs/guide/src/sdks.md")]
mod guide_sdks {}
