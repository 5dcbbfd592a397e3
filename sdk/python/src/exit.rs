//! What happens to accepted commands when the interpreter exits.
//!
//! The `a3s_lane` package registers an `atexit` hook that calls [`exit_drain`]. Within
//! one bound (5 s by default, `A3S_LANE_EXIT_DRAIN_SECONDS`):
//!
//! - every live `Lane` that still has work gets to finish it; what is left is cancelled
//!   and counted;
//! - every `RedisQueue` submit Redis has not answered yet ([`SubmitInFlight`]) gets to
//!   be answered; what is left is counted;
//! - every running `RedisWorker` is shut down gracefully: it stops claiming and its
//!   running commands finish; what still runs at the bound is cancelled and handed back
//!   to Redis for another worker (a worker whose `async def` handlers' event loop has
//!   closed hands them back at once).
//!
//! The hook reports on stderr what did not finish. After it no runtime thread enters
//! Python ([`attach_if_alive`]): attaching to a finalized interpreter panics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use a3s_lane::{CommandQueue, QueueManager};
use parking_lot::{Mutex, RwLock};
use pyo3::prelude::*;

use crate::redis::worker::WorkerShared;
use crate::runtime::runtime;

/// Open (true) until the exit hook closes it. Held for reading from the check to the
/// moment the GIL is taken, so that the hook, which takes it for writing, knows that no
/// thread is about to enter Python.
static GATE: RwLock<bool> = RwLock::new(true);

/// Runs `f` with the GIL, unless the interpreter is exiting (then `None`).
pub(crate) fn attach_if_alive<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    let open = GATE.read();
    if !*open {
        return None;
    }
    Some(Python::attach(move |py| {
        drop(open);
        f(py)
    }))
}

/// A lane the exit hook must look at.
pub(crate) struct ExitEntry {
    pub(crate) manager: QueueManager,
    pub(crate) queue: Weak<CommandQueue>,
    pub(crate) durable: bool,
    /// Where its `async def` handlers run.
    pub(crate) env: Arc<crate::handler::HandlerEnv>,
}

static LANES: Mutex<Vec<Weak<ExitEntry>>> = Mutex::new(Vec::new());

/// Registers a lane; it is forgotten when the returned entry is dropped.
pub(crate) fn register(entry: ExitEntry) -> Arc<ExitEntry> {
    let entry = Arc::new(entry);
    let mut lanes = LANES.lock();
    lanes.retain(|lane| lane.strong_count() > 0);
    lanes.push(Arc::downgrade(&entry));
    entry
}

static WORKERS: Mutex<Vec<Weak<WorkerShared>>> = Mutex::new(Vec::new());

/// Registers a `RedisWorker`; it is forgotten when the returned state is dropped.
pub(crate) fn register_worker(worker: WorkerShared) -> Arc<WorkerShared> {
    let worker = Arc::new(worker);
    let mut workers = WORKERS.lock();
    workers.retain(|worker| worker.strong_count() > 0);
    workers.push(Arc::downgrade(&worker));
    worker
}

/// `RedisQueue` submits Redis has not answered yet (of those begun before the exit hook).
static SUBMITS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Set when the exit hook starts: submits begun later (a daemon thread that goes on
/// submitting) are not waited for, so that the wait ends.
static EXITING: AtomicBool = AtomicBool::new(false);

/// One `RedisQueue` submit on its way to Redis, from the call until Redis answered (or
/// the submit failed): the exit hook waits for it.
pub(crate) struct SubmitInFlight {
    counted: bool,
}

impl SubmitInFlight {
    pub(crate) fn begin() -> Self {
        let counted = !EXITING.load(Ordering::Acquire);
        if counted {
            SUBMITS_IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        }
        Self { counted }
    }
}

impl Drop for SubmitInFlight {
    fn drop(&mut self) {
        if self.counted {
            SUBMITS_IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How often the exit hook looks at the submits in flight.
const SUBMIT_POLL: Duration = Duration::from_millis(2);

/// Waits until no submit is in flight or `deadline` passes; returns how many still are.
fn wait_for_submits(deadline: Instant) -> usize {
    loop {
        let left = SUBMITS_IN_FLIGHT.load(Ordering::Acquire);
        let now = Instant::now();
        if left == 0 || now >= deadline {
            return left;
        }
        std::thread::sleep(SUBMIT_POLL.min(deadline - now));
    }
}

/// A `RedisWorker` that did not finish its running commands at exit.
#[derive(IntoPyObject)]
pub(crate) struct UnfinishedWorker {
    /// Its id in Redis.
    id: String,
    /// How many commands it ran when the exit hook stopped it.
    running: usize,
    /// Whether its `async def` handlers' event loop had closed (its commands were then
    /// handed back at once).
    loop_closed: bool,
}

/// What the exit hook could not finish.
#[derive(IntoPyObject, Default)]
pub(crate) struct ExitReport {
    /// In-process commands cancelled.
    dropped: usize,
    /// Commands left in durable storage (they run at the next start).
    stored: usize,
    /// Lanes never started that held commands.
    never_started: usize,
    /// `RedisQueue` submits Redis had not answered.
    unacknowledged: usize,
    /// `RedisWorker`s whose running commands were handed back to Redis.
    workers: Vec<UnfinishedWorker>,
}

/// How one worker is stopped at exit.
enum WorkerStop {
    /// Gracefully, within the bound.
    Graceful(tokio::task::JoinHandle<a3s_lane::Result<()>>),
    /// At once (its event loop had closed): how many it handed back.
    Now(tokio::task::JoinHandle<usize>),
}

fn unfinished(queue: &CommandQueue) -> usize {
    let stats = queue.stats_now();
    stats.total_pending + stats.total_active + stats.total_delayed
}

/// Drains every live lane, waits for the `RedisQueue` submits in flight and shuts the
/// running `RedisWorker`s down, for at most `timeout` seconds in all; then closes the
/// gate and cancels what is left. Returns what did not finish (a dict: `dropped`,
/// `stored`, `never_started`, `unacknowledged`, `workers`).
#[pyfunction(name = "_exit_drain")]
#[pyo3(signature = (timeout, /))]
pub(crate) fn exit_drain(py: Python<'_>, timeout: f64) -> ExitReport {
    let timeout = if timeout.is_finite() && timeout > 0.0 {
        Duration::from_secs_f64(timeout.min(3600.0))
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + timeout;
    EXITING.store(true, Ordering::Release);
    let workers = stop_workers(py, timeout);
    let lanes: Vec<(Arc<ExitEntry>, Arc<CommandQueue>)> = LANES
        .lock()
        .iter()
        .filter_map(Weak::upgrade)
        .filter_map(|lane| lane.queue.upgrade().map(|queue| (lane, queue)))
        .collect();
    let mut lost = Lost::default();
    // Which lanes can still run their commands: started, and (for `async def` handlers)
    // with an open event loop. The others' commands can never run: counted now.
    let mut live = Vec::new();
    for (lane, queue) in lanes {
        let loop_closed = lane
            .env
            .home
            .get()
            .is_some_and(|bridge| bridge.close_if_loop_closed(py));
        if queue.is_started() && !loop_closed {
            live.push((lane, queue));
            continue;
        }
        let left = unfinished(&queue);
        if left > 0 {
            lost.count(&lane, left);
            if !queue.is_started() {
                lost.never_started += 1;
            }
        }
        runtime().block_on(async {
            let _ = lane.manager.shutdown_now().await;
        });
    }
    let (unacknowledged, workers) = py.detach(|| {
        for (lane, _) in &live {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = runtime().block_on(lane.manager.drain(left));
        }
        let unacknowledged = wait_for_submits(deadline);
        let workers: Vec<UnfinishedWorker> = workers
            .into_iter()
            .filter_map(|(id, running, stop)| match stop {
                WorkerStop::Graceful(stop) => match runtime().block_on(stop) {
                    Ok(Ok(())) => None,
                    // Timed out (handed back), failed or panicked: not finished.
                    _ => Some(UnfinishedWorker {
                        id,
                        running,
                        loop_closed: false,
                    }),
                },
                WorkerStop::Now(stop) => {
                    let handed_back = runtime().block_on(stop).unwrap_or(running);
                    (handed_back > 0).then_some(UnfinishedWorker {
                        id,
                        running: handed_back,
                        loop_closed: true,
                    })
                }
            })
            .collect();
        (unacknowledged, workers)
    });
    // From now on no runtime thread enters Python. Detached: a thread waiting for the
    // GIL with the gate held gets it, lets go of the gate, and the write goes through.
    py.detach(|| *GATE.write() = false);
    for (lane, queue) in &live {
        let left = unfinished(queue);
        if left > 0 {
            lost.count(lane, left);
            runtime().block_on(async {
                let _ = lane.manager.shutdown_now().await;
            });
        }
    }
    ExitReport {
        dropped: lost.dropped,
        stored: lost.stored,
        never_started: lost.never_started,
        unacknowledged,
        workers,
    }
}

/// Starts stopping every running `RedisWorker` on the runtime: gracefully within
/// `timeout`, or at once if its `async def` handlers' event loop has closed (they could
/// never finish). Returns each one's id, running count and stop.
fn stop_workers(py: Python<'_>, timeout: Duration) -> Vec<(String, usize, WorkerStop)> {
    let workers: Vec<Arc<WorkerShared>> = WORKERS.lock().iter().filter_map(Weak::upgrade).collect();
    let mut stops = Vec::new();
    for shared in workers {
        let Some((worker, id)) = shared.take_at_exit() else {
            continue;
        };
        let loop_closed = shared
            .env()
            .home
            .get()
            .is_some_and(|bridge| bridge.close_if_loop_closed(py));
        let running = worker.running();
        let stop = if loop_closed {
            WorkerStop::Now(runtime().spawn(worker.shutdown_now()))
        } else {
            WorkerStop::Graceful(runtime().spawn(worker.shutdown(timeout)))
        };
        stops.push((id, running, stop));
    }
    stops
}

#[derive(Default)]
struct Lost {
    dropped: usize,
    stored: usize,
    never_started: usize,
}

impl Lost {
    fn count(&mut self, lane: &ExitEntry, commands: usize) {
        if lane.durable {
            self.stored += commands;
        } else {
            self.dropped += commands;
        }
    }
}
