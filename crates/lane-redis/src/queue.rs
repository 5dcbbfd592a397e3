//! [`RedisQueue`]: submitting commands to a queue in Redis, awaiting their results,
//! cancelling them, and inspecting or administering the queue.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use lane_core::{
    CancelOutcome, DeadLetter, EventEmitter, EventStream, LaneError, LaneEvent, LaneStatus,
    QueueStats, Result,
};
use parking_lot::Mutex;
use redis::Value as RedisValue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{RedisLaneSpec, RedisQueueConfig};
use crate::connection::{Conn, Target, connect_listener};
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{
    self, Entry, array, decode_error, int, opt_string, parse_run, redis_error, string,
};
use lane_core::RateLimitConfig;

/// Commands per submit script call when many submits are waiting.
const MAX_SUBMIT_BATCH: usize = 512;
/// Results taken per round trip by the result listener.
const RESULT_BATCH: usize = 512;
/// How long the result listener blocks before checking its connection.
const LISTEN_BLOCK: Duration = Duration::from_secs(30);

/// A command this process awaits: where its result and its progress go.
struct Waiter {
    result: oneshot::Sender<Result<Value>>,
    progress: watch::Sender<Option<Value>>,
}

type Waiters = Mutex<HashMap<u64, Waiter>>;

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

struct SubmitRequest {
    reference: u64,
    lane: String,
    command_type: String,
    payload: String,
    reply: oneshot::Sender<Result<u64>>,
}

/// Where a command of a Redis queue is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteState {
    /// Waiting in its lane.
    Pending,
    /// Running on a worker.
    Running,
    /// Failed, waiting for its retry delay.
    Delayed,
    /// Finished successfully.
    Done,
    /// Cancelled.
    Cancelled,
    /// Failed for good; kept as a dead letter.
    Dead,
}

/// A command's record in a Redis queue ([`RedisQueue::command`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteCommand {
    /// Its id.
    pub id: u64,
    /// Its lane.
    pub lane_id: String,
    /// Its handler type.
    pub command_type: String,
    /// Its payload.
    pub payload: Value,
    /// Where it is.
    pub state: RemoteState,
    /// How many runs started (a run lost with its worker counts too).
    pub attempts: u32,
    /// How many runs failed.
    pub failures: u32,
    /// The worker of the latest run.
    pub worker: Option<String>,
    /// The fencing token of the latest run: only the run holding it may finish the command.
    /// Tokens grow with every claim, so they order claims across all workers.
    pub fencing_token: Option<u64>,
    /// When the latest run was claimed, in microseconds since the Unix epoch (Redis clock).
    pub started_at_us: Option<u64>,
    /// The result, once finished.
    pub result: Option<Result<Value>>,
}

/// Counts of a Redis queue ([`RedisQueue::stats`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisQueueStats {
    /// Per-lane counts in the core's shape (`total_active` counts leases held by workers).
    pub queue: QueueStats,
    /// Registered workers.
    pub workers: usize,
    /// Workers waiting for work.
    pub idle_workers: usize,
    /// Lifetime counters: `submitted`, `completed`, `retried`, `dead`, `cancelled`,
    /// `requeued` (taken back from a dead worker), `released`, `stale` (completions
    /// rejected by fencing), `workers_lost`.
    pub counters: HashMap<String, u64>,
}

impl RedisQueueStats {
    /// A lifetime counter, 0 if it never moved.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

impl RedisQueue {
    /// Connects (to one server, or to a cluster: see [`RedisQueueConfig::cluster`]),
    /// checks Redis answers, and declares the config's lanes. Fails with
    /// [`LaneError::Storage`] naming the address when Redis cannot be reached within the
    /// connect timeout ([`RedisQueueConfig::with_connect_timeout`]).
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
            prefix.clone(),
            client_id.clone(),
            result_ttl_ms,
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

    /// Declares a lane with the one lane model ([`LaneConfig`](lane_core::LaneConfig) and
    /// a priority, lower runs first), or updates it. Priority, cap, rate limit and
    /// priority boost apply to the next claims (a changed rate limit starts with a full
    /// bucket); timeout, cancel grace and retry policy to the next runs on every worker.
    /// When a boost is added to a lane, the wait of the commands already pending counts
    /// from now. An option the Redis engine cannot honour is a
    /// [`LaneError::ConfigError`] naming it.
    pub async fn declare_lane(
        &self,
        id: &str,
        config: lane_core::LaneConfig,
        priority: u8,
    ) -> Result<()> {
        let lane = RedisLaneSpec::from_config(id, &config, priority)?;
        let (kind, rate, period, burst) = match lane.rate_limit {
            RateLimitConfig::Unlimited => ("", 0, 0, 0),
            RateLimitConfig::TokenBucket {
                rate,
                period,
                burst,
            } => ("tb", rate, period.as_micros().max(1), burst),
            RateLimitConfig::SlidingWindow { limit, window } => {
                ("sw", limit, window.as_micros().max(1), 0)
            }
        };
        let (deadline, steps) = match lane.priority_boost.deadline() {
            None => (String::new(), String::new()),
            Some(deadline) => (
                deadline.as_micros().to_string(),
                lane.priority_boost
                    .steps()
                    .iter()
                    .map(|(time, boost)| format!("{}:{boost}", time.as_micros()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        SCRIPTS
            .declare
            .key(&self.inner.prefix)
            .arg(id)
            .arg(lane.priority)
            .arg(lane.max_concurrency)
            .arg(kind)
            .arg(rate)
            .arg(period.to_string())
            .arg(burst)
            .arg(deadline)
            .arg(steps)
            .arg(lane.run.encode())
            .run::<()>(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))
    }

    /// Submits a replayable command to the end of `lane`; the handle awaits its result.
    /// Fails with [`LaneError::LaneNotFound`] for a lane not declared in Redis.
    pub async fn submit(
        &self,
        lane: &str,
        command_type: &str,
        payload: Value,
    ) -> Result<RedisCommandHandle> {
        if command_type.is_empty() || command_type.contains('\n') {
            return Err(LaneError::QueueError(format!(
                "command type {command_type:?} must be non-empty and hold no newline"
            )));
        }
        let payload = serde_json::to_string(&payload)?;
        self.ensure_listener();
        // Created before sending: if anything below fails, dropping it forgets the waiter.
        let mut handle = self.await_result(0);
        let (id_tx, id_rx) = oneshot::channel();
        self.inner
            .submits
            .send(SubmitRequest {
                reference: handle.reference,
                lane: lane.to_owned(),
                command_type: command_type.to_owned(),
                payload,
                reply: id_tx,
            })
            .map_err(|_| LaneError::QueueError("the queue's submit task stopped".into()))?;
        let id = id_rx
            .await
            .map_err(|_| LaneError::QueueError("the queue's submit task stopped".into()))??;
        handle.id = id;
        Ok(handle)
    }

    /// Submits several commands; concurrent calls share round trips either way, this
    /// only saves the caller from spawning. Commands keep their order within a lane.
    pub async fn submit_batch<I, L, T>(&self, commands: I) -> Result<Vec<RedisCommandHandle>>
    where
        I: IntoIterator<Item = (L, T, Value)>,
        L: AsRef<str>,
        T: AsRef<str>,
    {
        let commands: Vec<(L, T, Value)> = commands.into_iter().collect();
        let pending: Vec<_> = commands
            .iter()
            .map(|(lane, command_type, payload)| {
                self.submit(lane.as_ref(), command_type.as_ref(), payload.clone())
            })
            .collect();
        // Each submit enqueues when first polled, and join_all polls them in order.
        futures_util::future::join_all(pending)
            .await
            .into_iter()
            .collect()
    }

    /// Cancels a command: a pending or delayed one ends now; a running one is told
    /// through a durable flag that reaches its worker (even if the worker was busy or
    /// briefly disconnected), and ends as cancelled once it stops.
    pub async fn cancel(&self, id: u64) -> Result<CancelOutcome> {
        let reason = wire::encode_error(&LaneError::Cancelled("cancelled by request".into()));
        let outcome: String = SCRIPTS
            .cancel
            .key(&self.inner.prefix)
            .arg(id)
            .arg(self.inner.result_ttl_ms)
            .arg(reason)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        Ok(match outcome.as_str() {
            "cancelled" => CancelOutcome::Cancelled,
            "signalled" => CancelOutcome::Signalled,
            "finished" => CancelOutcome::AlreadyFinished,
            _ => CancelOutcome::Unknown,
        })
    }

    /// A command's record, or `None` if it is unknown or its record expired.
    pub async fn command(&self, id: u64) -> Result<Option<RemoteCommand>> {
        let reply: RedisValue = SCRIPTS
            .inspect
            .key(&self.inner.prefix)
            .arg(id)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        let [entry, worker, run, delayed, record] =
            <[RedisValue; 5]>::try_from(array(reply)?).map_err(|_| wire::protocol("inspect"))?;
        let payload_value =
            |payload: &str| serde_json::from_str(payload).unwrap_or(Value::String(payload.into()));
        if let Some(entry) = opt_string(&entry)? {
            let entry = Entry::parse(&entry)?;
            let mut record = RemoteCommand {
                id,
                lane_id: entry.lane.to_owned(),
                command_type: entry.command_type.to_owned(),
                payload: payload_value(entry.payload),
                state: if opt_string(&delayed)?.is_some() {
                    RemoteState::Delayed
                } else {
                    RemoteState::Pending
                },
                attempts: entry.attempts,
                failures: entry.failures,
                worker: None,
                fencing_token: None,
                started_at_us: None,
                result: None,
            };
            if let (Some(worker), Some(run)) = (opt_string(&worker)?, opt_string(&run)?) {
                let (token, started) = parse_run(&run);
                record.state = RemoteState::Running;
                record.worker = Some(worker);
                record.attempts = entry.attempts + 1;
                record.fencing_token = token;
                record.started_at_us = started;
            }
            return Ok(Some(record));
        }
        let fields = array(record)?
            .iter()
            .map(opt_string)
            .collect::<Result<Vec<_>>>()?;
        let [
            Some(entry),
            Some(state),
            last_worker,
            last_run,
            outcome,
            result,
        ] = <[Option<String>; 6]>::try_from(fields).map_err(|_| wire::protocol("inspect"))?
        else {
            return Ok(None);
        };
        let entry = Entry::parse(&entry)?;
        let state = match state.as_str() {
            "done" => RemoteState::Done,
            "cancelled" => RemoteState::Cancelled,
            _ => RemoteState::Dead,
        };
        let (token, started) = last_run.as_deref().map_or((None, None), parse_run);
        let ran = last_run.is_some();
        let record = RemoteCommand {
            id,
            lane_id: entry.lane.to_owned(),
            command_type: entry.command_type.to_owned(),
            payload: payload_value(entry.payload),
            state,
            attempts: entry.attempts + u32::from(ran),
            failures: entry.failures + u32::from(ran && state == RemoteState::Dead),
            worker: last_worker,
            fencing_token: token,
            started_at_us: started,
            result: match (outcome.as_deref(), result) {
                (Some("ok"), Some(data)) => Some(serde_json::from_str(&data).map_err(Into::into)),
                (Some("err"), Some(data)) => Some(Err(decode_error(&data))),
                _ => None,
            },
        };
        Ok(Some(record))
    }

    /// Counts per lane and for the queue.
    pub async fn stats(&self) -> Result<RedisQueueStats> {
        let reply: RedisValue = SCRIPTS
            .stats
            .key(&self.inner.prefix)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        let mut parts = array(reply)?.into_iter();
        let mut next = || parts.next().ok_or_else(|| wire::protocol("stats"));
        let lanes = array(next()?)?;
        let delayed = int(&next()?)? as usize;
        let workers = int(&next()?)? as usize;
        let idle_workers = int(&next()?)? as usize;
        let counters_raw = array(next()?)?;
        let mut stats = RedisQueueStats {
            queue: QueueStats {
                total_delayed: delayed,
                ..QueueStats::default()
            },
            workers,
            idle_workers,
            counters: HashMap::new(),
        };
        for lane in lanes.chunks(8) {
            let [
                id,
                priority,
                max,
                pending,
                active,
                paused,
                throttled,
                effective_priority,
            ] = lane
            else {
                return Err(wire::protocol("lane stats"));
            };
            let id = string(id)?;
            let priority = int(priority)? as u8;
            let status = LaneStatus {
                id: id.clone(),
                priority,
                effective_priority: int(effective_priority)? as u8,
                pending: int(pending)? as usize,
                active: int(active)?.max(0) as usize,
                min: 0,
                max: int(max)? as usize,
                paused: int(paused)? == 1,
                throttled: int(throttled)? == 1,
            };
            stats.queue.total_pending += status.pending;
            stats.queue.total_active += status.active;
            stats.queue.lanes.insert(id, status);
        }
        for pair in counters_raw.chunks(2) {
            if let [name, value] = pair {
                stats
                    .counters
                    .insert(string(name)?, int(value)?.max(0) as u64);
            }
        }
        Ok(stats)
    }

    /// Stops claims from a lane on every worker until [`RedisQueue::resume_lane`].
    pub async fn pause_lane(&self, lane: &str) -> Result<()> {
        self.pause(lane, "pause", Duration::ZERO).await
    }

    /// Stops claims from a lane on every worker for `duration` (for example after an
    /// HTTP 429 with `Retry-After`); a shorter pause never cuts a longer one short.
    pub async fn pause_lane_for(&self, lane: &str, duration: Duration) -> Result<()> {
        lane_core::validate_timed_pause(duration)?;
        self.pause(lane, "pause_for", duration).await
    }

    /// Ends a pause (timed or not) of a lane.
    pub async fn resume_lane(&self, lane: &str) -> Result<()> {
        self.pause(lane, "resume", Duration::ZERO).await
    }

    async fn pause(&self, lane: &str, mode: &str, duration: Duration) -> Result<()> {
        let outcome: String = SCRIPTS
            .pause
            .key(&self.inner.prefix)
            .arg(lane)
            .arg(mode)
            .arg(duration.as_micros().to_string())
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        if outcome == "unknown" {
            return Err(self.lane_not_found(lane).await);
        }
        Ok(())
    }

    async fn lane_not_found(&self, lane: &str) -> LaneError {
        let known: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("{}:lanes", self.inner.prefix))
            .query_async(&mut self.conn())
            .await
            .unwrap_or_default();
        lane_not_found(lane, known)
    }

    /// Dead letters (commands that failed for good), oldest first, at most `limit`.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let ids: Vec<(u64, f64)> = redis::cmd("ZRANGE")
            .arg(format!("{}:dead", self.inner.prefix))
            .arg(0)
            // Past i64 the stop index means "to the end" (-1), which Redis can parse.
            .arg(i64::try_from(limit - 1).unwrap_or(-1))
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(&e))?;
        let mut letters = Vec::with_capacity(ids.len());
        for (id, failed_at_us) in ids {
            let Some(command) = self.command(id).await? else {
                continue;
            };
            let error = match command.result {
                Some(Err(error)) => error.to_string(),
                _ => String::new(),
            };
            letters.push(DeadLetter {
                command_id: id,
                command_type: command.command_type,
                lane_id: command.lane_id,
                error,
                attempts: command.failures,
                failed_at: (failed_at_us / 1000.0) as u64,
                payload: Some(command.payload),
            });
        }
        Ok(letters)
    }

    /// Sends a dead letter back to the end of its lane as a fresh command (attempts
    /// reset); the handle awaits its new result.
    pub async fn redrive(&self, id: u64) -> Result<RedisCommandHandle> {
        self.ensure_listener();
        let handle = self.await_result(id);
        let outcome: String = SCRIPTS
            .redrive
            .key(&self.inner.prefix)
            .arg(id)
            .arg(&self.inner.client_id)
            .arg(handle.reference)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        match outcome.as_str() {
            "ok" => Ok(handle),
            "unknown_lane" => Err(LaneError::QueueError(format!(
                "dead letter {id} belongs to a lane that is no longer declared; declare it again first"
            ))),
            _ => Err(LaneError::QueueError(format!(
                "no dead letter with command id {id}"
            ))),
        }
    }

    /// Deletes every key of this queue (all its lanes, commands, results and dead
    /// letters). Meant for tests and for retiring a tenant; running workers of the queue
    /// lose their leases.
    pub async fn clear(&self) -> Result<usize> {
        let mut conn = self.conn();
        let pattern = format!("{}:*", escape_glob(&self.inner.prefix));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            // On a cluster: the node holding the queue's slot, every time (cursors are
            // per node).
            let (next, keys): (u64, Vec<String>) = conn
                .query_at(&self.inner.prefix, scan)
                .await
                .map_err(|e| redis_error(&e))?;
            if !keys.is_empty() {
                deleted += redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<usize>(&mut conn)
                    .await
                    .map_err(|e| redis_error(&e))?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Subscribes to the events of every command of the queue, whichever process
    /// submitted it and whichever worker runs it, from now on: the keys and payloads of
    /// the in-process queue ([`keys`](lane_core::event::keys): submitted, started, completed, retry, failed or
    /// timeout then dead_lettered, cancelled, progress). They come from the queue's event
    /// stream in Redis (see the crate docs), read by one task per `RedisQueue` that runs
    /// while the queue lives, from its first subscriber on. A subscriber that falls more
    /// than 1024 events behind receives a [`EVENTS_LAGGED`](lane_core::event::keys::EVENTS_LAGGED) event.
    pub fn subscribe(&self) -> EventStream {
        let stream = self.inner.events.subscribe();
        self.ensure_event_reader();
        stream
    }

    /// Subscribes to the events `filter` accepts; see [`RedisQueue::subscribe`].
    pub fn subscribe_filtered<F>(&self, filter: F) -> EventStream
    where
        F: Fn(&LaneEvent) -> bool + Send + Sync + 'static,
    {
        let stream = self.inner.events.subscribe_filtered(filter);
        self.ensure_event_reader();
        stream
    }

    fn ensure_event_reader(&self) {
        let mut reader = self.inner.event_reader.lock();
        if reader.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        *reader = Some(stop_tx);
        self.inner.runtime.spawn(crate::events::run_reader(
            self.inner.target.clone(),
            format!("{}:events", self.inner.prefix),
            crate::events::stream_id_now(
                self.inner.clock_offset_ms,
                self.inner.clock_uncertainty_ms,
            ),
            self.inner.events.clone(),
            stop_rx,
        ));
    }

    /// Registers a waiter under a fresh reference; the handle forgets it when dropped.
    fn await_result(&self, id: u64) -> RedisCommandHandle {
        let reference = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
        let (result, result_rx) = oneshot::channel();
        let (progress, progress_rx) = watch::channel(None);
        self.inner
            .waiters
            .lock()
            .insert(reference, Waiter { result, progress });
        RedisCommandHandle {
            id,
            reference,
            result: result_rx,
            progress: progress_rx,
            queue: self.clone(),
        }
    }

    /// Starts the task that reads this client's result list, once.
    fn ensure_listener(&self) {
        let mut listener = self.inner.listener.lock();
        if listener.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        *listener = Some(stop_tx);
        self.inner.runtime.spawn(run_listener(
            self.inner.target.clone(),
            format!("{}:results:{}", self.inner.prefix, self.inner.client_id),
            self.inner.waiters.clone(),
            stop_rx,
        ));
    }
}

fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn lane_not_found(lane: &str, mut known: Vec<String>) -> LaneError {
    known.sort_unstable();
    LaneError::LaneNotFound {
        lane: lane.to_owned(),
        known: if known.is_empty() {
            "(none declared in Redis)".into()
        } else {
            known.join(", ")
        },
    }
}

/// Sends queued submits in batches: one script call in flight, the next batch gathering
/// meanwhile, so throughput grows with load while a lone submit costs one round trip.
async fn run_submitter(
    mut requests: mpsc::UnboundedReceiver<SubmitRequest>,
    mut conn: Conn,
    prefix: String,
    client_id: String,
    result_ttl_ms: u64,
) {
    let mut batch = Vec::with_capacity(MAX_SUBMIT_BATCH);
    while requests.recv_many(&mut batch, MAX_SUBMIT_BATCH).await > 0 {
        let mut invocation = SCRIPTS.submit.key(&prefix);
        invocation.arg(&client_id).arg(result_ttl_ms);
        for request in &batch {
            invocation
                .arg(request.reference)
                .arg(&request.lane)
                .arg(&request.command_type)
                .arg(&request.payload);
        }
        match invocation.run::<(Vec<u64>, Vec<String>)>(&mut conn).await {
            Ok((ids, known)) if ids.len() == batch.len() => {
                for (request, id) in batch.drain(..).zip(ids) {
                    let result = if id == 0 {
                        Err(lane_not_found(&request.lane, known.clone()))
                    } else {
                        Ok(id)
                    };
                    let _ = request.reply.send(result);
                }
            }
            Ok(_) => {
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(wire::protocol("submit")));
                }
            }
            Err(error) => {
                let error = redis_error(&error);
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Reads this client's result list (a durable list: results wait there while the
/// connection is down) and resolves the waiting handles.
async fn run_listener(
    target: Arc<Target>,
    key: String,
    waiters: Arc<Waiters>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conn: Option<Conn> = None;
    loop {
        let current = match &mut conn {
            Some(conn) => conn,
            None => {
                match connect_listener(&target, LISTEN_BLOCK, &mut stop, "result listener", || {})
                    .await
                {
                    Some(connected) => conn.insert(connected),
                    None => return,
                }
            }
        };
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&key).arg(LISTEN_BLOCK.as_secs());
        let popped = tokio::select! {
            _ = &mut stop => return,
            popped = blpop.query_async::<Option<(String, String)>>(current) => popped,
        };
        let first = match popped {
            Ok(Some((_, message))) => message,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, "result listener lost its Redis connection; reconnecting");
                conn = None;
                continue;
            }
        };
        deliver(&waiters, &first);
        // Drain what else is waiting, a batch per round trip.
        loop {
            let more = redis::cmd("LPOP")
                .arg(&key)
                .arg(RESULT_BATCH)
                .query_async::<Option<Vec<String>>>(current)
                .await;
            match more {
                Ok(Some(messages)) => {
                    for message in &messages {
                        deliver(&waiters, message);
                    }
                    if messages.len() < RESULT_BATCH {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "result listener lost its Redis connection; reconnecting");
                    conn = None;
                    break;
                }
            }
        }
    }
}

/// A result message is `reference \n id \n outcome \n data`; a progress message
/// (outcome `progress`, sent by the worker while the command runs) has `lane \n JSON`
/// as its data.
fn deliver(waiters: &Waiters, message: &str) {
    let mut parts = message.splitn(4, '\n');
    let (Some(reference), Some(id), Some(outcome), Some(data)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        tracing::warn!(message, "ignoring a malformed result message");
        return;
    };
    let Ok(reference) = reference.parse::<u64>() else {
        return;
    };
    if outcome == "progress" {
        let (Ok(id), Some((lane, json))) = (id.parse::<u64>(), data.split_once('\n')) else {
            tracing::warn!(message, "ignoring a malformed progress message");
            return;
        };
        let Ok(progress) = serde_json::from_str::<Value>(json) else {
            tracing::warn!(message, "ignoring a progress message that is not JSON");
            return;
        };
        // Subscribers get it from the event stream; here it only updates the handle.
        let _ = (id, lane);
        let waiters = waiters.lock();
        // Not awaited (handle dropped) or already finished: nobody follows it.
        if let Some(waiter) = waiters.get(&reference) {
            waiter.progress.send_replace(Some(progress));
        }
        return;
    }
    let Some(waiter) = waiters.lock().remove(&reference) else {
        return; // the handle was dropped; the result stays readable with command()
    };
    let result = match outcome {
        "ok" => serde_json::from_str(data).map_err(Into::into),
        _ => Err(decode_error(data)),
    };
    let _ = waiter.result.send(result);
}

/// A command submitted to a [`RedisQueue`]: await it for the result (from whichever
/// worker ran it). Dropping it does not cancel the command.
#[must_use = "a handle does nothing unless awaited or used to cancel; drop it to detach"]
pub struct RedisCommandHandle {
    id: u64,
    reference: u64,
    result: oneshot::Receiver<Result<Value>>,
    progress: watch::Receiver<Option<Value>>,
    queue: RedisQueue,
}

impl std::fmt::Debug for RedisCommandHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCommandHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RedisCommandHandle {
    /// The command's id in the queue.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Cancels the command; see [`RedisQueue::cancel`].
    pub async fn cancel(&self) -> Result<CancelOutcome> {
        self.queue.cancel(self.id).await
    }

    /// The latest progress the command's handler reported
    /// ([`CommandContext::report_progress`](lane_core::CommandContext::report_progress)),
    /// `None` before the first report. Reports come in order; a report replaced before
    /// it left the worker is skipped, and the last one arrives before the result. Once
    /// the result arrived (or the handle was dropped), the value stays as it is and
    /// [`watch::Receiver::changed`] fails.
    pub fn progress(&self) -> watch::Receiver<Option<Value>> {
        self.progress.clone()
    }
}

impl Future for RedisCommandHandle {
    type Output = Result<Value>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result).poll(cx).map(|received| {
            received.unwrap_or_else(|_| {
                Err(LaneError::QueueError(
                    "the queue's result listener stopped before the result arrived".into(),
                ))
            })
        })
    }
}

impl Drop for RedisCommandHandle {
    fn drop(&mut self) {
        self.queue.inner.waiters.lock().remove(&self.reference);
    }
}

/// The Redis server's clock minus this process's, in milliseconds, and the round trip it
/// was measured over (one TIME call; the server read its clock somewhere in it).
async fn clock_offset_ms(conn: &mut Conn, prefix: &str) -> Result<(i64, i64)> {
    let local_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    };
    let before = local_ms();
    let (secs, micros): (i64, i64) = conn
        .query_at(prefix, redis::cmd("TIME"))
        .await
        .map_err(|e| redis_error(&e))?;
    let after = local_ms();
    let server = secs.saturating_mul(1000).saturating_add(micros / 1000);
    let middle = before + (after - before) / 2;
    Ok((server - middle, after - before + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn waiter(
        waiters: &Waiters,
        reference: u64,
    ) -> (
        oneshot::Receiver<Result<Value>>,
        watch::Receiver<Option<Value>>,
    ) {
        let (result, result_rx) = oneshot::channel();
        let (progress, progress_rx) = watch::channel(None);
        waiters
            .lock()
            .insert(reference, Waiter { result, progress });
        (result_rx, progress_rx)
    }

    #[test]
    fn progress_reaches_the_handle_until_the_result_then_is_dropped() {
        let waiters = Waiters::default();
        let (mut result, progress) = waiter(&waiters, 1);
        let (_other, other_progress) = waiter(&waiters, 2);

        deliver(&waiters, "1\n41\nprogress\njobs\n{\"done\":1}");
        assert_eq!(*progress.borrow(), Some(json!({"done": 1})));

        deliver(&waiters, "1\n41\nok\n\"finished\"");
        assert_eq!(result.try_recv().unwrap().unwrap(), json!("finished"));
        // Late progress of the finished command, then progress of another one: only the
        // second is delivered.
        deliver(&waiters, "1\n41\nprogress\njobs\n{\"done\":2}");
        deliver(&waiters, "2\n42\nprogress\njobs\n7");
        assert_eq!(*other_progress.borrow(), Some(json!(7)));
        assert_eq!(*progress.borrow(), Some(json!({"done": 1})));
    }

    #[test]
    fn malformed_progress_is_ignored_without_resolving_the_handle() {
        let waiters = Waiters::default();
        let (mut result, progress) = waiter(&waiters, 1);
        deliver(&waiters, "1\n41\nprogress\nno-newline");
        deliver(&waiters, "1\n41\nprogress\njobs\nnot json");
        assert!(result.try_recv().is_err(), "still waiting for the result");
        assert_eq!(*progress.borrow(), None);
    }
}
