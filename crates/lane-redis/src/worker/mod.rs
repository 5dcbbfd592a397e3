//! [`RedisWorker`]: runs the commands of a Redis queue with registered handlers.
//!
//! One driver task owns the worker's state and its one conversation with Redis: each
//! round trip (the `exchange` script) reports finished runs, renews the lease, does
//! housekeeping, collects cancel requests and claims as many commands as there are free
//! slots. While a round trip is in flight, finished runs queue up and go together in the
//! next one. An idle worker blocks on its own wake list (BLPOP on a second connection)
//! and on a timer for the next housekeeping deadline: no polling. The timer also renews
//! the lease when the worker has nothing else to say: one heartbeat per worker, not per
//! command. A schedule task per worker fires the recurring schedules (`schedules.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lane_core::{
    CancelTrigger, CommandContext, HandlerRegistry, LaneError, Result, supervise,
    supervise_keeping_slot,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::{LaneRun, RedisWorkerConfig};
use crate::connection::{Conn, Target, connect_listener};
use crate::progress::{ProgressOutbox, Route, run_sender};
use crate::queue::RedisQueue;
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{self, Entry, array, encode_error, int, opt_string, redis_error, string};

use self::schedules::ScheduleWake;

/// Why a run's cancellation signal fired.
const REASON_NONE: u8 = 0;
/// Someone called cancel: the command ends as cancelled.
const REASON_REQUEST: u8 = 1;
/// The worker stops at once: the command goes back to its lane for another worker.
const REASON_RELEASE: u8 = 2;
/// The worker's lease was lost: the command already went back to its lane.
const REASON_LOST: u8 = 3;

/// Runs the commands of a [`RedisQueue`] with the handlers of a [`HandlerRegistry`].
///
/// Start as many as you like, in any number of processes and machines. Each claims the
/// most urgent commands it has room for; lane caps and rate limits hold over all of
/// them. A worker that dies (or stalls past its lease) loses its commands to the others,
/// and its late results are rejected by fencing.
///
/// ```no_run
/// use a3s_lane::{HandlerRegistry, RedisQueue, RedisQueueConfig, RedisWorker, RedisWorkerConfig, handler_fn};
/// use std::time::Duration;
///
/// # async fn demo() -> a3s_lane::Result<()> {
/// let queue = RedisQueue::connect(RedisQueueConfig::new("redis://127.0.0.1:6379").with_default_lanes()).await?;
/// let handlers = HandlerRegistry::default();
/// handlers.register("fetch_data", handler_fn(|payload, _ctx| async move { Ok(payload) }));
/// let worker = RedisWorker::start(&queue, handlers, RedisWorkerConfig::new(64)).await?;
/// // ... until it is time to stop:
/// worker.shutdown(Duration::from_secs(30)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisWorker {
    id: String,
    control: mpsc::UnboundedSender<Control>,
    running: Arc<AtomicUsize>,
    /// Resolves with how many runs the worker handed back to the queue.
    done: Option<oneshot::Receiver<usize>>,
}

#[derive(Debug)]
enum Control {
    /// Claim nothing more; leave once running commands finished.
    Drain,
    /// Cancel running commands, hand them back to the queue, leave.
    Abort,
}

/// A command this worker claimed.
#[derive(Debug)]
struct Claim {
    id: u64,
    lane: String,
    command_type: String,
    payload: String,
    attempt: u32,
    token: String,
    failures: u32,
    /// The submitter waiting for the result (empty if none) and its reference.
    client: String,
    cref: String,
    /// How the command's lane runs it (an unreadable setting fails the run).
    run: LaneRunResult,
}

/// A finished run, on its way to Redis.
#[derive(Debug)]
struct Completion {
    id: u64,
    token: String,
    kind: &'static str,
    /// The handler still runs (it ignored its cancel or timeout): the command is answered
    /// but the lane slot stays taken until a `freed` completion says it returned.
    hold: bool,
    data: String,
    delay_us: u128,
}

struct Run {
    trigger: CancelTrigger,
    reason: Arc<AtomicU8>,
}

struct Shared {
    queue: RedisQueue,
    handlers: HandlerRegistry,
    config: RedisWorkerConfig,
    id: String,
    prefix: String,
    /// Progress reports on their way to the submitters.
    progress: Arc<ProgressOutbox>,
    /// How each lane's commands run, as last read from Redis (raw settings, parsed).
    lane_runs: LaneRuns,
    /// Tells the schedule task of earlier instants the round trips report.
    schedules: Arc<ScheduleWake>,
}

/// Each lane's run settings as Redis last sent them with a claim; parsed once per change.
#[derive(Default)]
struct LaneRuns(parking_lot::Mutex<HashMap<String, (String, LaneRunResult)>>);

type LaneRunResult = std::result::Result<Arc<LaneRun>, LaneError>;

impl LaneRuns {
    /// Takes the `lane, settings, …` list of a reply.
    fn update(&self, fields: &[redis::Value]) -> Result<()> {
        let mut runs = self.0.lock();
        for pair in fields.chunks(2) {
            let [lane, raw] = pair else {
                return Err(wire::protocol("lane runs"));
            };
            let (lane, raw) = (string(lane)?, string(raw)?);
            if runs.get(&lane).is_some_and(|(known, _)| *known == raw) {
                continue;
            }
            let parsed = LaneRun::parse(&lane, &raw).map(Arc::new);
            runs.insert(lane, (raw, parsed));
        }
        Ok(())
    }

    fn get(&self, lane: &str) -> LaneRunResult {
        match self.0.lock().get(lane) {
            Some((_, run)) => run.clone(),
            None => Err(wire::protocol("a claim of a lane without run settings")),
        }
    }
}

struct Reply {
    lost: bool,
    wait_ms: i64,
    claims: Vec<Claim>,
    cancels: Vec<u64>,
    stale: usize,
    /// Runs Redis held for this worker that it did not know of, given back.
    given_back: usize,
    /// The earliest next instant of the recurring schedules (ms, Redis clock).
    next_schedule: Option<u64>,
}

impl RedisWorker {
    /// Registers the worker with the queue and starts it on the current tokio runtime.
    /// Fails on an invalid config or when Redis cannot be reached.
    pub async fn start(
        queue: &RedisQueue,
        handlers: HandlerRegistry,
        config: RedisWorkerConfig,
    ) -> Result<Self> {
        config.validate()?;
        let id = config.worker_id.clone().unwrap_or_else(default_worker_id);
        let shared = Arc::new(Shared {
            queue: queue.clone(),
            handlers,
            prefix: queue.key_prefix().to_owned(),
            config,
            id: id.clone(),
            progress: Arc::default(),
            lane_runs: LaneRuns::default(),
            schedules: Arc::default(),
        });
        // Whether progress goes to the queue's event stream too (read once, at start).
        let events = queue.events_enabled().await?;
        let mut conn = queue.conn();
        let slots = shared.config.slots;
        // The first round trip registers the worker: connection errors surface here.
        let first = shared.exchange(&mut conn, &[], slots, false, None).await?;
        let (control, control_rx) = mpsc::unbounded_channel();
        let (wake_tx, wake_rx) = mpsc::channel(1);
        let (done_tx, done) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (schedules_stop, schedules_stopped) = oneshot::channel::<()>();
        let running = Arc::new(AtomicUsize::new(0));
        tokio::spawn(schedules::run(shared.clone(), schedules_stopped));
        tokio::spawn(listen_for_wakes(
            queue.inner.target.clone(),
            format!("{}:wake:{id}", shared.prefix),
            shared.config.block_timeout,
            wake_tx,
            stop_rx,
        ));
        tokio::spawn(run_sender(
            shared.progress.clone(),
            queue.conn(),
            shared.prefix.clone(),
            queue.inner.result_ttl_ms,
            events,
        ));
        let (completions_tx, completions_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            shared,
            conn,
            runs: HashMap::new(),
            held: HashSet::new(),
            running: running.clone(),
            completions_tx,
            completions_rx,
            wake_rx,
            control_rx,
            outbox: Vec::new(),
            in_flight: FuturesUnordered::new(),
            reserved: 0,
            talk: false,
            registered: true,
            accepting: true,
            aborting: false,
            gave_up: false,
            reconcile: false,
            link_down: false,
            control_closed: false,
            due: None,
            retry_at: None,
            last_exchange: Instant::now(),
            backoff: queue.inner.target.backoff.min,
            wakes: 0,
            released: 0,
        };
        tokio::spawn(async move {
            let progress = driver.shared.progress.clone();
            let released = driver.run(first).await;
            progress.shutdown();
            drop(stop_tx);
            drop(schedules_stop);
            let _ = done_tx.send(released);
        });
        Ok(Self {
            id,
            control,
            running,
            done: Some(done),
        })
    }

    /// The worker's id (as stored in Redis and reported in command records).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many commands this worker runs now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Stops claiming, lets running commands finish, reports them and leaves the queue.
    /// After `timeout`, what still runs is cancelled and handed back to the queue, and
    /// this returns [`LaneError::Timeout`].
    pub async fn shutdown(mut self, timeout: Duration) -> Result<()> {
        let _ = self.control.send(Control::Drain);
        let done = self.done.take().expect("taken only by shutdown");
        tokio::pin!(done);
        if tokio::time::timeout(timeout, &mut done).await.is_ok() {
            return Ok(());
        }
        let _ = self.control.send(Control::Abort);
        let _ = done.await;
        Err(LaneError::Timeout(timeout))
    }

    /// Stops at once: running commands are cancelled (their handlers see the
    /// cancellation signal) and handed back to the queue for other workers, without
    /// counting an attempt. Returns how many were handed back (a claim on its way
    /// from Redis when this was called counts too).
    pub async fn shutdown_now(mut self) -> usize {
        let _ = self.control.send(Control::Abort);
        match self.done.take() {
            Some(done) => done.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for RedisWorker {
    /// A dropped worker stops as with [`RedisWorker::shutdown_now`], in the background.
    fn drop(&mut self) {
        if self.done.is_some() {
            let _ = self.control.send(Control::Abort);
        }
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().replace(char::is_whitespace, "-"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        fastrand::u64(..) & 0xff_ffff
    )
}

impl Shared {
    async fn exchange(
        &self,
        conn: &mut Conn,
        completions: &[Completion],
        want: usize,
        registered: bool,
        known: Option<(&[u64], &[u64])>,
    ) -> Result<Reply> {
        let mut invocation = SCRIPTS.exchange.key(&self.prefix);
        invocation
            .arg(&self.id)
            .arg(self.config.lease_ttl.as_micros().to_string())
            .arg(want)
            .arg(if registered { "1" } else { "0" })
            .arg(self.queue.inner.result_ttl_ms)
            .arg(completions.len());
        for completion in completions {
            let kind = if completion.hold {
                format!("{}!", completion.kind)
            } else {
                completion.kind.to_owned()
            };
            invocation
                .arg(completion.id)
                .arg(&completion.token)
                .arg(kind)
                .arg(&completion.data)
                .arg(completion.delay_us.to_string());
        }
        match known {
            Some((running, held)) => {
                invocation.arg(running.len() + held.len());
                for id in running {
                    invocation.arg(*id);
                }
                for id in held {
                    invocation.arg(format!("held:{id}"));
                }
            }
            None => {
                invocation.arg(-1);
            }
        }
        let reply: redis::Value = invocation.run(conn).await.map_err(|e| redis_error(&e))?;
        parse_reply(reply, &self.lane_runs)
    }

    /// Runs one claimed command and says how it ended.
    /// Runs one claimed command and says how it ended, with the run itself when its
    /// handler still runs after it had to be answered (see [`Held`]).
    async fn run(
        &self,
        claim: Claim,
        ctx: CommandContext,
        reason: &AtomicU8,
    ) -> (Completion, Option<Held>) {
        let (result, held) = self.execute(&claim, ctx).await;
        // A result goes through Redis to the submitter: the payload rule holds for it too.
        let result = result.and_then(|value| lane_core::check_payload(&value).map(|()| value));
        let (kind, data, delay_us) = match result {
            Ok(value) => (
                "ok",
                serde_json::to_string(&value).unwrap_or_else(|_| "null".into()),
                0,
            ),
            Err(error) if error.is_cancelled() => match reason.load(Ordering::Acquire) {
                REASON_RELEASE => ("release", String::new(), 0),
                _ => ("cancel", encode_error(&error), 0),
            },
            Err(error) => {
                let delay = if error.is_retryable() {
                    claim
                        .run
                        .as_ref()
                        .ok()
                        .and_then(|run| run.retry.as_ref())
                        .and_then(|policy| policy.delay_for(claim.failures + 1))
                } else {
                    None
                };
                match delay {
                    Some(delay) => ("retry", encode_error(&error), delay.as_micros()),
                    None => ("fail", encode_error(&error), 0),
                }
            }
        };
        let completion = Completion {
            id: claim.id,
            token: claim.token,
            kind,
            hold: held.is_some(),
            data,
            delay_us,
        };
        (completion, held)
    }

    async fn execute(&self, claim: &Claim, ctx: CommandContext) -> (Result<Value>, Option<Held>) {
        if ctx.is_cancelled() {
            // Claimed while the worker was stopping: hand it back without running it.
            return (
                Err(LaneError::Cancelled("cancelled before it started".into())),
                None,
            );
        }
        let prepared = (|| {
            let handler = self.handlers.get(&claim.command_type)?;
            let payload: Value = serde_json::from_str(&claim.payload).map_err(|error| {
                LaneError::NonRetryable(format!("the payload is not valid JSON: {error}"))
            })?;
            let limits = claim.run.as_ref().map_err(Clone::clone)?.limits;
            Ok((handler, payload, limits))
        })();
        let (handler, payload, limits) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => return (Err(error), None),
        };
        let stops_when_dropped = handler.stops_when_dropped();
        let run_ctx = ctx.clone();
        // The future owns the handler: a held run outlives this call.
        let run = ctx
            .clone()
            .scope(async move { handler.handle(payload, run_ctx).await });
        if stops_when_dropped {
            return (supervise(&ctx, limits, run).await.into_result(), None);
        }
        // A host-language handler goes on after its future is dropped: keep it, and its
        // slot, until it returns.
        let (end, still_running) = supervise_keeping_slot(&ctx, limits, run).await;
        (
            end.into_result(),
            still_running.map(|run| Box::pin(run) as Held),
        )
    }
}

fn parse_reply(reply: redis::Value, lane_runs: &LaneRuns) -> Result<Reply> {
    let mut parts = array(reply)?.into_iter();
    let mut next = || parts.next().ok_or_else(|| wire::protocol("exchange"));
    let status = string(&next()?)?;
    let wait_ms = int(&next()?)?;
    let claims_raw = array(next()?)?;
    let cancels_raw = array(next()?)?;
    let stale = array(next()?)?.len();
    // A 'lost' reply carries no lane runs (and no claims).
    if let Some(runs) = parts.next() {
        lane_runs.update(&array(runs)?)?;
    }
    let given_back = match parts.next() {
        Some(count) => int(&count)? as usize,
        None => 0,
    };
    let next_schedule = match parts.next() {
        // A sorted set's score comes back as a double's text.
        Some(score) => opt_string(&score)?
            .map(|score| score.parse::<f64>().map(|ms| ms as u64))
            .transpose()
            .map_err(|_| wire::protocol("exchange"))?,
        None => None,
    };
    let mut claims = Vec::with_capacity(claims_raw.len() / 3);
    for fields in claims_raw.chunks(3) {
        let [id, token, entry] = fields else {
            return Err(wire::protocol("claim"));
        };
        let entry = string(entry)?;
        let parsed = Entry::parse(&entry)?;
        claims.push(Claim {
            id: int(id)? as u64,
            lane: parsed.lane.to_owned(),
            command_type: parsed.command_type.to_owned(),
            payload: parsed.payload.to_owned(),
            attempt: parsed.attempts + 1,
            token: string(token)?,
            failures: parsed.failures,
            client: parsed.client.to_owned(),
            cref: parsed.cref.to_owned(),
            run: lane_runs.get(parsed.lane),
        });
    }
    let cancels = cancels_raw
        .iter()
        .map(|id| int(id).map(|id| id as u64))
        .collect::<Result<_>>()?;
    Ok(Reply {
        lost: status == "lost",
        wait_ms,
        claims,
        cancels,
        stale,
        given_back,
        next_schedule,
    })
}

/// A handler still running after its command was answered (it ignored its cancel or
/// timeout); the worker keeps its slot until it returns.
type Held = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Round trips one worker keeps in flight: while one runs, the next one already carries
/// the runs that finished meanwhile.
const MAX_IN_FLIGHT: usize = 2;

type Exchange = std::pin::Pin<Box<dyn std::future::Future<Output = Exchanged> + Send>>;

/// A round trip's outcome: the reply, the completions it carried, the claims it asked
/// for, and the wake-up count when it started.
struct Exchanged {
    result: Result<Reply>,
    sent: Vec<Completion>,
    want: usize,
    wakes_at_start: u64,
    reconciled: bool,
}

/// The driver task: owns the runs and the conversation with Redis.
struct Driver {
    shared: Arc<Shared>,
    conn: Conn,
    runs: HashMap<u64, Run>,
    /// Commands answered whose handler still runs: their slots stay taken.
    held: HashSet<u64>,
    running: Arc<AtomicUsize>,
    completions_tx: mpsc::UnboundedSender<Completion>,
    completions_rx: mpsc::UnboundedReceiver<Completion>,
    wake_rx: mpsc::Receiver<()>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    /// Finished runs not yet sent to Redis.
    outbox: Vec<Completion>,
    /// Round trips on their way; `reserved` slots are asked for by them.
    in_flight: FuturesUnordered<Exchange>,
    reserved: usize,
    /// Something happened that Redis should hear about (a wake-up, a deadline, a control).
    talk: bool,
    registered: bool,
    accepting: bool,
    aborting: bool,
    /// Stopping while Redis cannot be reached: leave the commands to lease expiry.
    gave_up: bool,
    /// A round trip failed: Redis may hold claims whose reply never arrived. The next
    /// round trip goes alone and tells Redis which runs this worker knows it holds.
    reconcile: bool,
    /// Whether Redis was unreachable at the last round trip (logged once per outage).
    link_down: bool,
    control_closed: bool,
    /// When to talk to Redis even if nothing happens (housekeeping).
    due: Option<Instant>,
    /// After a failed round trip, no new one before this.
    retry_at: Option<Instant>,
    last_exchange: Instant,
    backoff: Duration,
    /// Wake-ups received so far.
    wakes: u64,
    /// Runs handed back to the queue because the worker stopped.
    released: usize,
}

impl Driver {
    /// Returns how many runs were handed back to the queue.
    async fn run(mut self, first: Reply) -> usize {
        self.apply(first);
        loop {
            let heartbeat = self.last_exchange + self.shared.config.heartbeat_interval();
            let deadline = [self.due, self.retry_at]
                .into_iter()
                .flatten()
                .fold(heartbeat, Instant::min);
            tokio::select! {
                biased;
                control = self.control_rx.recv(), if !self.control_closed => {
                    // A dropped handle stops the worker like shutdown_now.
                    self.control_closed = control.is_none();
                    self.accepting = false;
                    if matches!(control, Some(Control::Abort) | None) && !self.aborting {
                        self.abort_runs();
                    }
                    self.talk = true;
                }
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.exchanged(done);
                }
                Some(completion) = self.completions_rx.recv() => {
                    self.finished(completion);
                    while let Ok(completion) = self.completions_rx.try_recv() {
                        self.finished(completion);
                    }
                }
                Some(()) = self.wake_rx.recv() => {
                    self.wakes += 1;
                    self.talk = true;
                }
                () = tokio::time::sleep_until(deadline), if self.in_flight.is_empty() => {
                    self.retry_at = self.retry_at.filter(|at| *at > Instant::now());
                    self.talk = true;
                }
            }
            let backing_off = self.retry_at.is_some_and(|at| at > Instant::now());
            // A reconciling round trip must see every claim Redis made: none in flight.
            let room = if self.reconcile {
                self.in_flight.is_empty()
            } else {
                self.in_flight.len() < MAX_IN_FLIGHT
            };
            if (self.talk || !self.outbox.is_empty()) && room && !backing_off && !self.gave_up {
                self.start_exchange();
            }
            // Stopping at once leaves held handlers behind: leaving the queue frees their
            // slots in Redis.
            let idle = self.runs.is_empty()
                && (self.held.is_empty() || self.aborting)
                && self.in_flight.is_empty();
            if idle && ((!self.accepting && self.outbox.is_empty()) || self.gave_up) {
                break;
            }
        }
        let leave = SCRIPTS
            .leave
            .key(&self.shared.prefix)
            .arg(&self.shared.id)
            .arg(self.shared.queue.inner.result_ttl_ms)
            .run::<()>(&mut self.conn)
            .await;
        if let Err(error) = leave {
            tracing::warn!(worker = %self.shared.id, %error, "could not leave the queue; its lease will expire");
        }
        self.released
    }

    /// Sends a round trip with the finished runs and as many claims as there are free slots.
    fn start_exchange(&mut self) {
        let want = if self.accepting {
            self.shared
                .config
                .slots
                .saturating_sub(self.runs.len() + self.held.len() + self.reserved)
        } else {
            0
        };
        let outbox = std::mem::take(&mut self.outbox);
        let shared = self.shared.clone();
        let mut conn = self.conn.clone();
        let registered = self.registered;
        let wakes_at_start = self.wakes;
        let known: Option<(Vec<u64>, Vec<u64>)> = self.reconcile.then(|| {
            (
                self.runs.keys().copied().collect(),
                self.held.iter().copied().collect(),
            )
        });
        self.reserved += want;
        self.talk = false;
        self.in_flight.push(Box::pin(async move {
            let result = shared
                .exchange(
                    &mut conn,
                    &outbox,
                    want,
                    registered,
                    known
                        .as_ref()
                        .map(|(running, held)| (running.as_slice(), held.as_slice())),
                )
                .await;
            Exchanged {
                result,
                sent: outbox,
                want,
                wakes_at_start,
                reconciled: known.is_some(),
            }
        }));
    }

    fn exchanged(&mut self, exchanged: Exchanged) {
        let Exchanged {
            result,
            sent,
            want,
            wakes_at_start,
            reconciled,
        } = exchanged;
        self.reserved -= want;
        match result {
            Ok(reply) => {
                self.backoff = self.shared.queue.inner.target.backoff.min;
                self.last_exchange = Instant::now();
                if self.link_down {
                    self.link_down = false;
                    tracing::info!(worker = %self.shared.id, "Redis answers again");
                }
                if reconciled {
                    self.reconcile = false;
                    if reply.given_back > 0 {
                        tracing::info!(worker = %self.shared.id, given_back = reply.given_back, "runs claimed by a round trip whose reply was lost went back to their lanes");
                    }
                }
                if reply.stale > 0 {
                    tracing::debug!(worker = %self.shared.id, stale = reply.stale, "completions rejected: their leases were taken over");
                }
                // A wake-up that came while this round trip held the free slots may be
                // for work that arrived after Redis answered it: the round trip started
                // for that wake-up asked for nothing, so ask again.
                if reply.claims.len() < want && self.wakes != wakes_at_start {
                    self.talk = true;
                }
                self.apply(reply);
            }
            Err(error) => {
                // Sent again later: if Redis did apply them, fencing rejects the repeat.
                if !self.link_down {
                    self.link_down = true;
                    tracing::warn!(worker = %self.shared.id, %error, "lost the connection to Redis; retrying until it answers");
                }
                // The reply may have been lost after Redis claimed commands for us.
                self.reconcile = true;
                self.outbox.extend(sent);
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = self.shared.queue.inner.target.backoff.next(self.backoff);
                self.talk = true;
                if self.aborting {
                    self.gave_up = true;
                }
            }
        }
    }

    fn finished(&mut self, completion: Completion) {
        if completion.kind == "freed" {
            self.held.remove(&completion.id);
        } else {
            self.runs.remove(&completion.id);
            if completion.hold {
                self.held.insert(completion.id);
            }
        }
        self.running
            .store(self.runs.len() + self.held.len(), Ordering::Relaxed);
        if completion.kind == "release" {
            self.released += 1;
        }
        self.outbox.push(completion);
    }

    fn abort_runs(&mut self) {
        self.aborting = true;
        for run in self.runs.values() {
            let _ = run.reason.compare_exchange(
                REASON_NONE,
                REASON_RELEASE,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            run.trigger.cancel();
        }
    }

    fn apply(&mut self, reply: Reply) {
        if let Some(next) = reply.next_schedule {
            self.shared.schedules.heard(next);
        }
        if reply.lost {
            // Our lease expired (a long pause, a partition): the queue gave our commands to
            // other workers. Stop them here; their results would be rejected anyway.
            tracing::warn!(worker = %self.shared.id, "lease lost; cancelling local runs and registering again");
            for run in self.runs.values() {
                let _ = run.reason.compare_exchange(
                    REASON_NONE,
                    REASON_LOST,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                run.trigger.cancel();
            }
            self.registered = false;
            self.talk = true;
            return;
        }
        self.registered = true;
        for id in reply.cancels {
            if let Some(run) = self.runs.get(&id) {
                let _ = run.reason.compare_exchange(
                    REASON_NONE,
                    REASON_REQUEST,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                run.trigger.cancel();
            }
        }
        for claim in reply.claims {
            self.start(claim);
        }
        self.due = (reply.wait_ms >= 0)
            .then(|| Instant::now() + Duration::from_millis(reply.wait_ms as u64));
    }

    fn start(&mut self, claim: Claim) {
        let (mut ctx, trigger) =
            CommandContext::with_cancel_trigger(claim.id, &claim.lane, claim.attempt);
        // Progress goes to the queue's event stream, and to the submitter's result list
        // when one waits.
        let reports = true;
        if reports {
            let progress = self.shared.progress.clone();
            progress.open(
                &claim.token,
                Route {
                    id: claim.id,
                    lane: claim.lane.clone(),
                    client: claim.client.clone(),
                    cref: claim.cref.clone(),
                },
            );
            let token = claim.token.clone();
            ctx = ctx.with_progress_sink(move |value| progress.report(&token, value));
        }
        let reason = Arc::new(AtomicU8::new(REASON_NONE));
        if self.aborting {
            reason.store(REASON_RELEASE, Ordering::Release);
            trigger.cancel();
        }
        self.runs.insert(
            claim.id,
            Run {
                trigger,
                reason: reason.clone(),
            },
        );
        self.running
            .store(self.runs.len() + self.held.len(), Ordering::Relaxed);
        let shared = self.shared.clone();
        let completions = self.completions_tx.clone();
        tokio::spawn(async move {
            let (completion, held) = shared.run(claim, ctx, &reason).await;
            if reports {
                // The last report reaches the submitter before the result.
                shared.progress.close(&completion.token).await;
            }
            let id = completion.id;
            let _ = completions.send(completion);
            if let Some(held) = held {
                held.await;
                let _ = completions.send(Completion {
                    id,
                    token: String::new(),
                    kind: "freed",
                    hold: false,
                    data: String::new(),
                    delay_us: 0,
                });
            }
        });
    }
}

/// Blocks on the worker's wake list and nudges the driver when something arrives. The
/// list is durable: a wake-up pushed while this task reconnects waits for it.
async fn listen_for_wakes(
    target: Arc<Target>,
    key: String,
    block: Duration,
    wake: mpsc::Sender<()>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conn: Option<Conn> = None;
    loop {
        let current = match &mut conn {
            Some(conn) => conn,
            // The driver may have missed wake-ups while disconnected: let it look.
            None => {
                match connect_listener(&target, block, &mut stop, "worker wake listener", || {
                    let _ = wake.try_send(());
                })
                .await
                {
                    Some(connected) => conn.insert(connected),
                    None => return,
                }
            }
        };
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&key).arg(block.as_secs_f64());
        let popped = tokio::select! {
            _ = &mut stop => return,
            popped = blpop.query_async::<Option<(String, String)>>(current) => popped,
        };
        match popped {
            Ok(Some(_)) => {
                if wake.try_send(()).is_err() && wake.is_closed() {
                    return;
                }
            }
            Ok(None) => {
                if wake.is_closed() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "worker lost its wake connection; reconnecting");
                conn = None;
            }
        }
    }
}

mod schedules;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod group_tests;
