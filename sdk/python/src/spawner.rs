//! The queue's `Spawner`: where its command runners are polled.
//!
//! A [`RunnerTask`] is polled where it is woken: on the home loop's thread when woken
//! there (an `async def` handler replied), on the tokio runtime otherwise (a plain
//! handler's thread finished, a timer fired). So an `async def` command goes from submit
//! to result on the loop's thread alone — no thread switch, no system call — while plain
//! handlers, timers and storage run on the runtime, whose threads never wait for the GIL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Wake, Waker};

use a3s_lane::{CommandRunner, Spawner};
use parking_lot::Mutex;
use pyo3::prelude::*;

use crate::event_loop::{LoopBridge, LoopHome, LoopWork};
use crate::runtime::runtime;

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

/// One of the queue's command runners, polled where it was woken: on the home loop's
/// thread when woken there (an `async def` handler replied), on the runtime otherwise
/// (a plain handler's thread finished, a timer fired). A command whose handler runs on
/// the loop thus goes from dispatch to result without a thread switch.
pub(crate) struct RunnerTask {
    runner: Mutex<Option<CommandRunner>>,
    state: AtomicU8,
    home: Arc<LoopHome>,
}

impl RunnerTask {
    fn schedule(self: Arc<Self>) {
        match self.home.get() {
            Some(bridge) if bridge.is_loop_thread() && !bridge.is_closed() => {
                bridge.push(self);
            }
            _ => self.run_on_runtime(),
        }
    }

    /// Polls the runner on the runtime (state: scheduled).
    fn run_on_runtime(self: Arc<Self>) {
        runtime().spawn(async move { self.poll_runner() });
    }

    /// Polls the runner until it waits (state: scheduled); re-polls if woken meanwhile.
    fn poll_runner(self: &Arc<Self>) {
        self.state.store(RUNNING, Ordering::Release);
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            let done = {
                let mut runner = self.runner.lock();
                let done = runner
                    .as_mut()
                    .is_none_or(|runner| runner.as_mut().poll(&mut cx).is_ready());
                if done {
                    *runner = None;
                }
                done
            };
            if done {
                self.state.store(DONE, Ordering::Release);
                return;
            }
            match self
                .state
                .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(_) => self.state.store(RUNNING, Ordering::Release),
            }
        }
    }
}

impl LoopWork for RunnerTask {
    fn run(self: Arc<Self>, _py: Python<'_>, _bridge: &Arc<LoopBridge>) {
        self.poll_runner();
    }

    fn abandon(self: Arc<Self>) {
        self.run_on_runtime();
    }
}

impl Wake for RunnerTask {
    fn wake(self: Arc<Self>) {
        loop {
            match self.state.load(Ordering::Acquire) {
                IDLE => {
                    if self
                        .state
                        .compare_exchange(IDLE, SCHEDULED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        self.schedule();
                        return;
                    }
                }
                RUNNING => {
                    if self
                        .state
                        .compare_exchange(RUNNING, NOTIFIED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

/// The queue's [`Spawner`]: runners start where they were dispatched (see [`RunnerTask`]).
pub(crate) struct LoopSpawner {
    home: Arc<LoopHome>,
}

impl std::fmt::Debug for LoopSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopSpawner").finish_non_exhaustive()
    }
}

impl LoopSpawner {
    /// Polls runners on `home`'s loop when woken there.
    pub(crate) fn new(home: Arc<LoopHome>) -> Self {
        Self { home }
    }
}

impl Spawner for LoopSpawner {
    fn spawn(&self, runner: CommandRunner) {
        let task = Arc::new(RunnerTask {
            runner: Mutex::new(Some(runner)),
            state: AtomicU8::new(SCHEDULED),
            home: self.home.clone(),
        });
        task.schedule();
    }
}
