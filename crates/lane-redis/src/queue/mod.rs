//! [`RedisQueue`]: submitting commands to a queue in Redis, awaiting their results,
//! cancelling them, and inspecting or administering the queue.
//!
//! One file per concern: `submit` (submits and the task that batches them), `results`
//! (the result listener and [`RedisCommandHandle`]), `inspect` (command records and
//! counts), `control` (lanes, cancel, dead letters, clear), `schedules` (recurring
//! schedules), `subscribe` (events) and `clock` (the Redis clock offset). This file holds [`RedisQueue`] and the state its
//! parts share.

mod backlog;
mod clock;
mod control;
mod groups;
mod inspect;
mod results;
mod schedules;
mod submit;
mod subscribe;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use lane_core::{EventEmitter, Result};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use self::clock::clock_offset_ms;
use self::results::Waiters;
use self::submit::{SubmitRequest, run_submitter};
use crate::config::RedisQueueConfig;
use crate::connection::{Conn, Target};

pub use self::inspect::{RedisQueueStats, RemoteCommand, RemoteState};
pub use self::results::RedisCommandHandle;
pub(crate) use self::schedules::{ScheduleState, parse_schedule};

/// A queue in Redis, shared by any number of producer and worker processes.
///
/// Producers [`submit`](RedisQueue::submit) replayable commands (lane, type, JSON
/// payload) and await their results; [`RedisWorker`](crate::RedisWorker)s in any process
/// run them with their registered handlers. Lanes keep strict priority and FIFO order,
/// their concurrency caps and rate limits hold over all workers together, and cancel
/// requests reach the worker running the command.
///
/// Cheap to clone; clones share connections. Concurrent submits are batched into one
/// round trip.
///
/// ```no_run
/// use a3s_lane::{RedisQueue, RedisQueueConfig};
///
/// # async fn demo() -> a3s_lane::Result<()> {
/// let queue = RedisQueue::connect(
///     RedisQueueConfig::new("redis://127.0.0.1:6379").with_default_lanes(),
/// )
/// .await?;
/// let handle = queue.submit("query", "fetch_data", serde_json::json!({"url": "https://example.com"})).await?;
/// let value = handle.await?; // run by some RedisWorker, anywhere
/// # let _ = value; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisQueue {
    pub(crate) inner: Arc<QueueInner>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.inner.prefix)
            .field("client_id", &self.inner.client_id)
            .field("waiting", &self.inner.waiters.lock().len())
            .finish_non_exhaustive()
    }
}

pub(crate) struct QueueInner {
    pub(crate) target: Arc<Target>,
    pub(crate) conn: Conn,
    pub(crate) prefix: String,
    pub(crate) result_ttl_ms: u64,
    client_id: String,
    waiters: Arc<Waiters>,
    events: EventEmitter,
    next_ref: AtomicU64,
    submits: mpsc::UnboundedSender<SubmitRequest>,
    /// Dropping the sender stops the result listener.
    listener: Mutex<Option<oneshot::Sender<()>>>,
    /// Dropping the sender stops the event reader (started by the first subscriber).
    event_reader: Mutex<Option<oneshot::Sender<()>>>,
    /// The Redis server's clock minus this process's, in milliseconds, and how far off
    /// that may be (the round trip it was measured over).
    clock_offset_ms: i64,
    clock_uncertainty_ms: i64,
    /// The runtime the queue was connected on: its background tasks run there, whichever
    /// thread later subscribes.
    runtime: tokio::runtime::Handle,
}

impl RedisQueue {
    /// Connects (to one server, or to a cluster: see [`RedisQueueConfig::cluster`]),
    /// checks Redis answers, and declares the config's lanes. Fails with
    /// [`LaneError::Storage`](lane_core::LaneError::Storage) naming the address when
    /// Redis cannot be reached within the connect timeout
    /// ([`RedisQueueConfig::with_connect_timeout`]).
    pub async fn connect(config: RedisQueueConfig) -> Result<Self> {
        config.validate()?;
        let target = Arc::new(config.target()?);
        let conn = target.connect(config.response_timeout).await?;
        let prefix = config.key_prefix();
        let (clock_offset_ms, clock_uncertainty_ms) =
            clock_offset_ms(&mut conn.clone(), &prefix).await?;
        let (submits, requests) = mpsc::unbounded_channel();
        let client_id = format!("{:016x}", fastrand::u64(..));
        let result_ttl_ms = config.result_ttl.as_millis().max(1) as u64;
        tokio::spawn(run_submitter(
            requests,
            conn.clone(),
            target.clone(),
            prefix.clone(),
            client_id.clone(),
            result_ttl_ms,
            config.response_timeout,
        ));
        let queue = Self {
            inner: Arc::new(QueueInner {
                target,
                conn,
                prefix,
                result_ttl_ms,
                client_id,
                waiters: Arc::default(),
                events: EventEmitter::new(lane_core::DEFAULT_EVENT_CAPACITY),
                next_ref: AtomicU64::new(1),
                submits,
                listener: Mutex::new(None),
                event_reader: Mutex::new(None),
                clock_offset_ms,
                clock_uncertainty_ms,
                runtime: tokio::runtime::Handle::current(),
            }),
        };
        if let Some(enabled) = config.events {
            queue.set_events(enabled).await?;
        }
        for (id, lane, priority) in &config.lanes {
            queue.declare_lane(id, lane.clone(), *priority).await?;
        }
        Ok(queue)
    }

    /// The key prefix with its hash tag, for example `{a3s-lane}`.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub(crate) fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }
}
