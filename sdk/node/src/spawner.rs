//! The in-process queue's `Spawner`: where its command runners are polled.
//!
//! A [`RunnerTask`] is polled where it is woken: on the JavaScript thread when woken
//! there (a submit dispatched it, a handler settled), through the lane's mailbox; on the
//! tokio runtime otherwise (a timer fired: a retry delay, a rate limit). So a command
//! goes from submit to result on the JavaScript thread alone — no thread switch — which
//! is most of what a command costs when the handler is a JavaScript function.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Wake, Waker};

use a3s_lane::{CommandRunner, Spawner};
use parking_lot::Mutex;

use crate::runtime::{Mail, Mailbox, in_runtime, spawn};

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

/// One command runner of the queue, polled where it was woken (see the module docs).
pub struct RunnerTask {
    runner: Mutex<Option<CommandRunner>>,
    state: AtomicU8,
    mailbox: Mailbox,
}

impl std::fmt::Debug for RunnerTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerTask")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RunnerTask {
    fn schedule(self: Arc<Self>) {
        if self.mailbox.is_js_thread() {
            let mailbox = self.mailbox.clone();
            if mailbox.send(Mail::Poll(self.clone())) {
                return;
            }
        }
        // Off the JavaScript thread, or its environment is gone.
        spawn(async move { self.poll() });
    }

    /// Polls the runner until it waits (state: scheduled); polls again if it was woken
    /// meanwhile. Called on the JavaScript thread by the mailbox, or on tokio.
    pub fn poll(self: &Arc<Self>) {
        self.state.store(RUNNING, Ordering::Release);
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            let done = in_runtime(|| {
                let mut runner = self.runner.lock();
                let done = runner
                    .as_mut()
                    .is_none_or(|runner| runner.as_mut().poll(&mut cx).is_ready());
                if done {
                    *runner = None;
                }
                done
            });
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
                // Scheduled or notified already, or done.
                _ => return,
            }
        }
    }
}

/// The in-process queue's [`Spawner`]: runners run where they are woken.
#[derive(Debug)]
pub struct MailboxSpawner {
    mailbox: Mailbox,
}

impl MailboxSpawner {
    /// Polls runners on the JavaScript thread of `mailbox` when dispatched there.
    pub fn new(mailbox: Mailbox) -> Self {
        Self { mailbox }
    }
}

impl Spawner for MailboxSpawner {
    fn spawn(&self, runner: CommandRunner) {
        let task = Arc::new(RunnerTask {
            runner: Mutex::new(Some(runner)),
            state: AtomicU8::new(SCHEDULED),
            mailbox: self.mailbox.clone(),
        });
        task.schedule();
    }
}
