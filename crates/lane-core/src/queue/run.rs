//! Running commands: the runner loop, one supervised run, and the booking of its end
//! (retry, dead letter or final reply) with the reports to observers, subscribers and
//! the journal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::Either;
use serde_json::json;
use tokio::time::Instant;
use tracing::Instrument;

use super::effects::Effects;
use super::{CommandQueue, info, now_ms};
use crate::client::CommandState;
use crate::command::{CancelSignal, CancelSource, CommandContext};
use crate::dead_letter::DeadLetter;
use crate::error::LaneError;
use crate::event::keys;
use crate::observer::{CommandInfo, RunOutcome};
use crate::retention::CommandFailure;
use crate::runner::{self, RunEnd, RunLimits};
use crate::scheduler::{Dispatch, LaneIdx, Task};

/// `run` in `span`, unwrapped when the span is disabled (nobody traces): then there is
/// no span to clone, enter and exit at each poll.
fn instrumented<F: std::future::Future>(
    run: F,
    span: &tracing::Span,
) -> Either<F, tracing::instrument::Instrumented<F>> {
    if span.is_disabled() {
        Either::Left(run)
    } else {
        Either::Right(run.instrument(span.clone()))
    }
}

/// Records how a run ended on its span (if it is recorded at all).
fn record_outcome(span: &tracing::Span, result: &RunEnd) {
    if span.is_disabled() {
        return;
    }
    let (outcome, failed) = match result {
        RunEnd::Ok(_) => ("completed", false),
        RunEnd::Err(error) if error.is_timeout() => ("timed_out", true),
        RunEnd::Err(_) => ("failed", true),
        RunEnd::Cancelled(_) => ("cancelled", false),
    };
    span.record("outcome", outcome);
    if failed {
        span.record("otel.status_code", "ERROR");
    }
}
use crate::storage::{StorageOp, StoredCommand, StoredFinished};

impl CommandQueue {
    pub(super) fn spawn(self: &Arc<Self>, dispatch: Dispatch) {
        if let Some(spawner) = &self.spawner {
            // A spawner that panics dropped the runner: its command ends with the panic,
            // and what that frees is tried on it again (one command at a time).
            let mut next = Some(dispatch);
            while let Some(dispatch) = next.take() {
                let (task, lane, attempt, group, holds_budget) = (
                    dispatch.task.clone(),
                    dispatch.lane.clone(),
                    dispatch.attempt,
                    dispatch.group.clone(),
                    dispatch.holds_budget,
                );
                let runner = self.clone().run(dispatch);
                let Err(panic) = crate::contain::contain(|| spawner.spawn(Box::pin(runner))) else {
                    return;
                };
                let error = LaneError::NonRetryable(format!(
                    "the queue's Spawner panicked when asked to run this command, which was \
                     not started: {panic}"
                ));
                tracing::error!(target: "a3s_lane", command_id = task.id, %error);
                let dispatch = Dispatch {
                    task,
                    lane,
                    attempt,
                    waited: Duration::ZERO,
                    timeout: None,
                    grace: Duration::ZERO,
                    refused: None,
                    group,
                    holds_budget,
                };
                next = self.finish(dispatch, RunEnd::Err(error), Duration::ZERO, false);
            }
            return;
        }
        let runner = self.clone().run(dispatch);
        let handle = self
            .runtime
            .get()
            .expect("dispatch happens only after start()");
        handle.spawn(runner);
    }

    async fn run(self: Arc<Self>, mut dispatch: Dispatch) {
        loop {
            // Run time is reported to observers and subscribers only; nobody, no clock read.
            let timed = !self.observers.is_empty() || self.events.has_subscribers();
            let started = timed.then(Instant::now);
            let elapsed = || started.map_or(Duration::ZERO, |started| started.elapsed());
            if let Some(result) = Self::ends_unstarted(&dispatch) {
                match self.finish(dispatch, result, elapsed(), false) {
                    Some(next) => dispatch = next,
                    None => return,
                }
                continue;
            }
            let task = dispatch.task.clone();
            let span = Self::span(&dispatch);
            let limits = RunLimits {
                timeout: dispatch.timeout,
                cancel_grace: dispatch.grace,
            };
            let context = |cancel: Arc<dyn CancelSource>| {
                CommandContext::new(
                    task.id,
                    dispatch.lane.clone(),
                    dispatch.attempt,
                    cancel,
                    self.events.clone(),
                )
            };
            if task.stops_when_dropped {
                // The task is the context's cancel source: no signal to allocate.
                let ctx = context(task.clone() as Arc<dyn CancelSource>);
                let run = instrumented(ctx.scope(task.command.execute()), &span);
                let result = runner::supervise_with(&task.cancel, limits, run).await;
                record_outcome(&span, &result);
                match self.finish(dispatch, result, elapsed(), false) {
                    Some(next) => {
                        dispatch = next;
                        tokio::task::consume_budget().await;
                    }
                    None => return,
                }
                continue;
            }
            // The future owns its task and lives here, not in a box, so that it can
            // outlive the answer; the attempt has its own cancel signal, requested also
            // at a timeout (a retry must not see it).
            let (ctx, tell) = if task.take_first_attempt() {
                (context(task.clone() as Arc<dyn CancelSource>), None)
            } else {
                let tell = Arc::new(CancelSignal::default());
                (context(tell.clone()), Some(tell))
            };
            let owned = task.clone();
            let run = ctx.scope(async move { owned.command.execute().await });
            let mut run = std::pin::pin!(runner::catching(instrumented(run, &span)));
            let told: &CancelSignal = tell.as_deref().unwrap_or_else(|| task.signal());
            let (result, running) =
                runner::supervise_keeping_pinned(&task.cancel, told, limits, run.as_mut()).await;
            record_outcome(&span, &result);
            if !running {
                match self.finish(dispatch, result, elapsed(), false) {
                    Some(next) => {
                        dispatch = next;
                        tokio::task::consume_budget().await;
                    }
                    None => return,
                }
                continue;
            }
            // Answered, but the handler goes on: its slot stays taken until it returns.
            let lane = task.lane();
            let (group, holds_budget) = (dispatch.group.clone(), dispatch.holds_budget);
            if let Some(next) = self.finish(dispatch, result, elapsed(), true) {
                self.spawn(next);
            }
            // Its result is discarded (the caller was answered); a panic in it is caught.
            let _ = run.await;
            match self.release_abandoned(lane, group.as_deref(), holds_budget) {
                Some(next) => dispatch = next,
                None => return,
            }
        }
    }

    /// How a dispatched command ends without running: its lane's policy panicked while
    /// choosing it, or it was cancelled meanwhile.
    fn ends_unstarted(dispatch: &Dispatch) -> Option<RunEnd> {
        let task = &dispatch.task;
        if let Some(error) = &dispatch.refused {
            tracing::error!(target: "a3s_lane", lane = &*dispatch.lane, command_id = task.id, %error);
            return Some(RunEnd::Err(error.clone()));
        }
        if task.cancel.is_requested() {
            return Some(RunEnd::Cancelled(runner::CANCELLED_BEFORE_START));
        }
        None
    }

    /// One span per run, a child of the submitter's span; a disabled one without a
    /// subscriber (the run is then not wrapped in it at all).
    fn span(dispatch: &Dispatch) -> tracing::Span {
        let task = &dispatch.task;
        tracing::info_span!(
            target: "a3s_lane",
            parent: &task.span,
            "lane.command",
            lane = &*dispatch.lane,
            command_id = task.id,
            command_type = task.command.command_type(),
            attempt = i64::from(dispatch.attempt),
            otel.kind = "consumer",
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    }

    /// Gives back the slot of an abandoned run that has now returned; then dispatches.
    fn release_abandoned(
        self: &Arc<Self>,
        lane: LaneIdx,
        group: Option<&str>,
        holds_budget: bool,
    ) -> Option<Dispatch> {
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            state.release(lane, group, holds_budget);
            state.lanes[lane as usize].abandoned_running -= 1;
            self.dispatch_locked(&mut state, Instant::now(), &mut effects);
            self.capture_depths(&state, &mut effects, &[lane]);
            effects.idle = state.is_idle();
        }
        self.apply(effects, true)
    }

    /// Books a finished run: retry, dead letter or final reply; then dispatches. With
    /// `keep_slot` (an abandoned run) the caller is answered but the slot stays taken.
    fn finish(
        self: &Arc<Self>,
        dispatch: Dispatch,
        result: RunEnd,
        elapsed: Duration,
        keep_slot: bool,
    ) -> Option<Dispatch> {
        let Dispatch {
            task,
            lane: lane_name,
            attempt,
            group,
            holds_budget,
            ..
        } = dispatch;
        let mut effects = Effects::default();
        let mut retry_delay = None;
        let mut stopped_before_retry = false;
        let mut strategy_panicked = None;
        // The record its lane keeps if this run ends it: the result is copied here, not
        // under the lock. A failure with dead letters is kept as the dead letter.
        let mut kept = task.is_retained().then(|| match &result {
            RunEnd::Ok(value) => Some((CommandState::Completed, Some(value.clone()), None)),
            RunEnd::Cancelled(reason) => Some((
                CommandState::Cancelled,
                None,
                Some(CommandFailure::from_error(&LaneError::Cancelled(
                    (*reason).into(),
                ))),
            )),
            RunEnd::Err(_) if self.dlq.is_some() || self.journal.is_some() => None,
            RunEnd::Err(error) => Some((
                CommandState::Failed,
                None,
                Some(CommandFailure::from_error(error)),
            )),
        });
        let now = Instant::now();
        {
            let mut state = self.state.lock();
            if keep_slot {
                let lane = &mut state.lanes[task.lane() as usize];
                lane.abandoned += 1;
                lane.abandoned_running += 1;
            } else {
                state.release(task.lane(), group.as_deref(), holds_budget);
            }
            if let RunEnd::Err(error) = &result
                && error.is_retryable()
            {
                let lane = state.lane(task.lane());
                let failures = task.failures() + 1;
                retry_delay = match lane.config.retry_strategy().map(|strategy| {
                    crate::contain::contain(|| strategy.retry_delay(failures, error))
                }) {
                    Some(Ok(delay)) => delay,
                    // A panicking strategy ends the command, with both reasons in its error.
                    Some(Err(panic)) => {
                        let error = LaneError::NonRetryable(format!(
                            "{error}; then the lane's retry strategy panicked, so it is not \
                             retried: {panic}"
                        ));
                        tracing::error!(target: "a3s_lane", command_id = task.id, %error);
                        strategy_panicked = Some(error);
                        None
                    }
                    None => None,
                };
                // After a hard stop a failure that would be retried is not a dead letter:
                // like a delayed retry cancelled by the stop, it stays in storage (with
                // this failure counted) and runs again on the next start.
                if retry_delay.is_some() && state.shutting_down_hard() {
                    retry_delay = None;
                    stopped_before_retry = true;
                }
            }
            // A custom strategy's delay past what the clock can hold means no retry: the
            // command fails for good (the built-in policy is checked when the lane is added).
            if let Some(delay) = retry_delay.filter(|d| now.checked_add(*d).is_none()) {
                tracing::warn!(
                    ?delay,
                    "a retry delay past what the clock can hold; not retrying"
                );
                retry_delay = None;
            }
            match retry_delay {
                Some(delay) if delay.is_zero() => {
                    state.record_failure(&task);
                    effects
                        .signals
                        .extend(state.enqueue(task.clone(), now, true));
                }
                Some(delay) => state.set_delayed(&task, now + delay),
                None => {
                    if matches!(result, RunEnd::Err(_)) {
                        state.record_failure(&task);
                    }
                    state.finish_task(&task);
                    // A command stopped by a hard stop runs again at the next start.
                    let stopped = stopped_before_retry || task.interrupted.load(Ordering::Relaxed);
                    if let Some(Some((final_state, value, mut failure))) = kept.take()
                        && !stopped
                    {
                        if let Some(error) = &strategy_panicked {
                            failure = Some(CommandFailure::from_error(error));
                        }
                        state.retain(&task, final_state, value, failure, true, now);
                    }
                }
            }
            self.dispatch_locked(&mut state, now, &mut effects);
            self.capture_depths(&state, &mut effects, &[task.lane()]);
            effects.idle = state.is_idle();
            if retry_delay.is_some_and(|d| !d.is_zero()) {
                self.ensure_timer_driver(&mut state);
            }
        }
        let result = strategy_panicked.map_or(result, RunEnd::Err);
        let abandoned = keep_slot.then(|| match &result {
            RunEnd::Cancelled(reason) => (*reason).to_owned(),
            RunEnd::Err(error) => error.to_string(),
            RunEnd::Ok(_) => String::new(),
        });
        if stopped_before_retry {
            self.report_stopped_before_retry(&task, &lane_name, attempt, result, elapsed);
        } else {
            self.report_finish(&task, &lane_name, attempt, result, retry_delay, elapsed);
        }
        if let Some(reason) = abandoned {
            self.events.emit_with(
                keys::COMMAND_ABANDONED,
                || json!({ "lane_id": &*lane_name, "command_id": task.id, "reason": reason }),
            );
        }
        self.apply(effects, true)
    }

    /// A command failed during a hard stop and would have been retried: it is reported
    /// as cancelled by the stop and its journal record keeps the new failure count.
    fn report_stopped_before_retry(
        &self,
        task: &Arc<Task>,
        lane: &Arc<str>,
        attempt: u32,
        result: RunEnd,
        elapsed: Duration,
    ) {
        let RunEnd::Err(error) = result else {
            return;
        };
        let info = info(task, lane, attempt);
        self.observe(&self.observers, |observer| {
            observer.on_finish(
                &info,
                RunOutcome::Failed {
                    error: &error,
                    retrying: false,
                },
                elapsed,
            );
        });
        const REASON: &str = "the queue was stopped before the command's retry";
        self.events.emit_with(keys::COMMAND_CANCELLED, || {
            json!({ "lane_id": &**lane, "command_id": task.id, "was_running": true, "reason": REASON, "error": error.to_string() })
        });
        self.journal_failure_count(task, lane);
        task.reply(Err(LaneError::Cancelled(REASON.into())));
    }

    fn report_finish(
        &self,
        task: &Arc<Task>,
        lane: &Arc<str>,
        attempt: u32,
        result: RunEnd,
        retry_delay: Option<Duration>,
        elapsed: Duration,
    ) {
        let info = info(task, lane, attempt);
        let retrying = retry_delay.is_some();
        match result {
            RunEnd::Ok(value) => {
                self.observe(&self.observers, |observer| {
                    observer.on_finish(&info, RunOutcome::Completed, elapsed);
                });
                self.events.emit_with(keys::COMMAND_COMPLETED, || {
                    json!({ "lane_id": &**lane, "command_id": task.id, "duration_ms": elapsed.as_secs_f64() * 1000.0 })
                });
                self.journal_end(task);
                task.reply(Ok(value));
            }
            RunEnd::Cancelled(reason) => {
                self.observe(&self.observers, |observer| {
                    observer.on_finish(&info, RunOutcome::Cancelled, elapsed);
                });
                self.events.emit_with(keys::COMMAND_CANCELLED, || {
                    json!({ "lane_id": &**lane, "command_id": task.id, "was_running": true, "reason": reason })
                });
                if !task.interrupted.load(Ordering::Relaxed) {
                    self.journal_end(task);
                }
                task.reply(Err(LaneError::Cancelled(reason.into())));
            }
            RunEnd::Err(error) => {
                let outcome = if error.is_timeout() {
                    RunOutcome::TimedOut { retrying }
                } else {
                    RunOutcome::Failed {
                        error: &error,
                        retrying,
                    }
                };
                self.observe(&self.observers, |observer| {
                    observer.on_finish(&info, outcome, elapsed);
                });
                if let Some(delay) = retry_delay {
                    self.observe(&self.observers, |observer| {
                        observer.on_retry(&info, delay);
                    });
                    self.events.emit_with(keys::COMMAND_RETRY, || {
                        json!({
                            "lane_id": &**lane,
                            "command_id": task.id,
                            "attempt": task.failures() + 1,
                            "delay_ms": delay.as_millis() as u64,
                            "error": error.to_string(),
                        })
                    });
                    self.journal_failure_count(task, lane);
                    return;
                }
                let key = if error.is_timeout() {
                    keys::COMMAND_TIMEOUT
                } else {
                    keys::COMMAND_FAILED
                };
                self.events.emit_with(key, || {
                    json!({ "lane_id": &**lane, "command_id": task.id, "error": error.to_string() })
                });
                self.dead_letter(task, lane, &info, &error);
                task.reply(Err(error));
            }
        }
    }

    fn dead_letter(&self, task: &Arc<Task>, lane: &str, info: &CommandInfo<'_>, error: &LaneError) {
        let letter = DeadLetter {
            command_id: task.id,
            command_type: task.command.command_type().to_owned(),
            lane_id: lane.to_owned(),
            error: error.to_string(),
            attempts: task.failures(),
            failed_at: now_ms(),
            payload: task.payload.clone(),
        };
        if self.dlq.is_none() && self.journal.is_none() {
            return;
        }
        self.observe(&self.observers, |observer| {
            observer.on_dead_letter(info);
        });
        self.events.emit_with(keys::COMMAND_DEAD_LETTERED, || {
            json!({
                "lane_id": lane,
                "command_id": task.id,
                "command_type": task.command.command_type(),
                "error": error.to_string(),
            })
        });
        // The dead letter is recorded before the command is removed, so a crash in
        // between leaves the command to recover rather than losing it. A queue with a
        // journal has attached it to its dead letters, so `push_sync` writes the letter.
        match (&self.dlq, &self.journal) {
            (Some(dlq), _) => {
                dlq.push_sync(letter);
            }
            (None, Some(journal)) => journal.write(StorageOp::SaveDeadLetter(letter)),
            (None, None) => {}
        }
        self.journal_remove(task);
    }

    /// Rewrites a durable command's record with its new failure count.
    fn journal_failure_count(&self, task: &Task, lane: &str) {
        if let Some(journal) = &self.journal {
            journal.write(StorageOp::SaveCommand(StoredCommand {
                id: task.id,
                lane_id: lane.to_owned(),
                command_type: task.command.command_type().to_owned(),
                payload: task.payload.clone().unwrap_or_default(),
                attempts: task.failures(),
                created_at: task.created_at_ms,
                // It started: its start time and deadline are behind it.
                not_before: None,
                start_by: None,
                key: task.key.as_deref().map(str::to_owned),
                group: task.group.as_deref().map(str::to_owned),
                replayable: task.payload.is_some(),
            }));
        }
    }

    /// A durable command ended: the journal keeps its record if its lane does (see
    /// [`StorageOp::SaveFinished`]), and forgets the command otherwise.
    pub(super) fn journal_end(&self, task: &Task) {
        let Some(journal) = &self.journal else {
            return;
        };
        let kept = task.is_retained().then(|| {
            let state = self.state.lock();
            let retention = state.lane(task.lane()).config.retention;
            state
                .retained
                .get(task.id, Instant::now())
                .cloned()
                .map(|status| (status, retention))
        });
        match kept.flatten() {
            Some((status, retention)) => {
                let keep_for = u64::try_from(retention.keep_for().as_millis()).unwrap_or(u64::MAX);
                journal.write(StorageOp::SaveFinished(StoredFinished {
                    expires_at_ms: status.finished_at_ms.unwrap_or(0).saturating_add(keep_for),
                    keep_last: retention.keep_last(),
                    status,
                }))
            }
            None => journal.write(StorageOp::RemoveCommand(task.id)),
        }
    }

    pub(super) fn journal_remove(&self, task: &Task) {
        if let Some(journal) = &self.journal {
            journal.write(StorageOp::RemoveCommand(task.id));
        }
    }
}
