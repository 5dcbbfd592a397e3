//! What happens to accepted commands when the interpreter exits.
//!
//! The `a3s_lane` package registers an `atexit` hook that calls [`exit_drain`]: every
//! live `Lane` that still has work gets up to a bound (5 s by default,
//! `A3S_LANE_EXIT_DRAIN_SECONDS`) to finish it; what is left is cancelled and counted,
//! and the hook reports the count on stderr. After the hook no runtime thread enters
//! Python ([`attach_if_alive`]): attaching to a finalized interpreter panics.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use a3s_lane::{CommandQueue, QueueManager};
use parking_lot::{Mutex, RwLock};
use pyo3::prelude::*;

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

fn unfinished(queue: &CommandQueue) -> usize {
    let stats = queue.stats_now();
    stats.total_pending + stats.total_active + stats.total_delayed
}

/// Drains every live lane for at most `timeout` seconds, then closes the gate and
/// cancels what is left. Returns (commands dropped, commands left in durable storage,
/// lanes never started that held commands).
#[pyfunction(name = "_exit_drain")]
#[pyo3(signature = (timeout, /))]
pub(crate) fn exit_drain(py: Python<'_>, timeout: f64) -> (usize, usize, usize) {
    let timeout = if timeout.is_finite() && timeout > 0.0 {
        Duration::from_secs_f64(timeout.min(3600.0))
    } else {
        Duration::ZERO
    };
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
    let deadline = Instant::now() + timeout;
    py.detach(|| {
        for (lane, _) in &live {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = runtime().block_on(lane.manager.drain(left));
        }
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
    (lost.dropped, lost.stored, lost.never_started)
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
