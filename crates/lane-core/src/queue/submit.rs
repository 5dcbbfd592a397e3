//! Accepting commands: submit, the durable write, and the insert into a lane.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::effects::Effects;
use super::{CommandQueue, info, now_ms};
use crate::command::{Command, CommandId, ReplayableCommand};
use crate::config::WhenFull;
use crate::error::{LaneError, Result};
use crate::event::keys;
use crate::handle::CommandHandle;
use crate::schedule::ScheduleInfo;
use crate::scheduler::{LaneIdx, Task};
use crate::storage::{StorageOp, StoredCommand};
use crate::timing::{SubmitOptions, Timing};

impl CommandQueue {
    /// Submits a command; the receiver yields its final result.
    pub async fn submit(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
    ) -> Result<oneshot::Receiver<Result<Value>>> {
        let payload = self.replay_payload_of(command.as_ref())?;
        let accepted = self
            .accept(
                lane_id,
                command,
                payload,
                0,
                Timing::default(),
                None,
                None,
                None,
            )
            .await?;
        Ok(accepted.rx)
    }

    /// Submits a command and returns a [`CommandHandle`] to await or cancel it.
    pub async fn submit_with_handle(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
    ) -> Result<CommandHandle> {
        let payload = self.replay_payload_of(command.as_ref())?;
        let accepted = self
            .accept(
                lane_id,
                command,
                payload,
                0,
                Timing::default(),
                None,
                None,
                None,
            )
            .await?;
        Ok(accepted.into_handle(self))
    }

    /// [`submit_with_handle`](Self::submit_with_handle) with [`SubmitOptions`]: a
    /// delay or start time, a start-by deadline.
    pub async fn submit_with_options(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
        options: &SubmitOptions,
    ) -> Result<CommandHandle> {
        let timing = options.resolve_now()?;
        let payload = self.replay_payload_of(command.as_ref())?;
        let accepted = self
            .accept(
                lane_id,
                command,
                payload,
                0,
                timing,
                options.key(),
                options.group(),
                None,
            )
            .await?;
        Ok(accepted.into_handle(self))
    }

    /// Submits a replayable command: `payload` runs with the handler registered for
    /// `command_type`. With storage configured it is durable before this returns.
    /// A payload past [`MAX_PAYLOAD_DEPTH`](crate::MAX_PAYLOAD_DEPTH) or
    /// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES), or a blank command type, is
    /// refused with [`LaneError::InvalidInput`].
    pub async fn submit_replayable(
        self: &Arc<Self>,
        lane_id: &str,
        command_type: &str,
        payload: Value,
    ) -> Result<CommandHandle> {
        self.submit_replayable_with(lane_id, command_type, payload, &SubmitOptions::default())
            .await
    }

    /// [`submit_replayable`](Self::submit_replayable) with [`SubmitOptions`]. The start
    /// time and deadline are journaled with the command, so a delayed command survives a
    /// restart (one that fell due meanwhile runs at start) and a deadline still holds.
    pub async fn submit_replayable_with(
        self: &Arc<Self>,
        lane_id: &str,
        command_type: &str,
        payload: Value,
        options: &SubmitOptions,
    ) -> Result<CommandHandle> {
        let timing = options.resolve_now()?;
        check_command_type(command_type)?;
        if let Err(error) = crate::payload::check_payload(&payload) {
            crate::payload::dismantle(payload);
            return Err(error);
        }
        let handler = match self.handlers.get(command_type) {
            Ok(handler) => handler,
            // An unknown lane is reported first: it is the submit's first argument.
            // Looked up only now, so a submit that finds its handler takes no extra lock.
            Err(missing) => return Err(self.lane_index_of(lane_id).err().unwrap_or(missing)),
        };
        // The task's copy is read only by the journal and the dead letters.
        let kept = (self.journal.is_some() || self.dlq.is_some()).then(|| payload.clone());
        let command = Box::new(ReplayableCommand {
            command_type: command_type.to_owned(),
            payload,
            handler,
        });
        let accepted = self
            .accept(
                lane_id,
                command,
                kept,
                0,
                timing,
                options.key(),
                options.group(),
                None,
            )
            .await?;
        Ok(accepted.into_handle(self))
    }

    /// The replay payload of a command submitted as a `Box<dyn Command>`
    /// ([`Command::replay_payload`]), asked only by a queue that records it (storage or
    /// dead letters), and checked as any replayable payload is.
    fn replay_payload_of(&self, command: &dyn Command) -> Result<Option<Value>> {
        if self.journal.is_none() && self.dlq.is_none() {
            return Ok(None);
        }
        let Some(payload) = command.replay_payload() else {
            return Ok(None);
        };
        if let Err(error) = crate::payload::check_payload(&payload) {
            crate::payload::dismantle(payload);
            return Err(error);
        }
        Ok(Some(payload))
    }

    /// Accepts a command: written durably first (with a journal), then queued. Every
    /// command is recorded: one without a payload (a `Box<dyn Command>` that gives no
    /// [`Command::replay_payload`]) as not replayable, so that a crash leaves a dead
    /// letter of it rather than nothing. `fire`:
    /// the command is a schedule's instant, written together with the schedule moved
    /// past it; it never waits for room (a full lane refuses it).
    #[expect(
        clippy::too_many_arguments,
        reason = "one path for every submit; each argument is part of the command"
    )]
    pub(super) async fn accept(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
        payload: Option<Value>,
        failures: u32,
        timing: Timing,
        key: Option<&str>,
        group: Option<&str>,
        fire: Option<&ScheduleInfo>,
    ) -> Result<Accepted> {
        check_command_type(command.command_type())?;
        // Without a journal the lane is looked up in the lock hold that queues the
        // command: one acquisition of the state lock per submit.
        let mut lane = LaneRef::Name(lane_id);
        let id = self.next_id();
        // Only the journal keeps it: no clock read without one.
        let created_at_ms = now_ms();
        let mut room_until = None;
        // The submitter's span, if someone traces; its `lane.command` children are the runs.
        let span = tracing::Span::current();
        // Lane 0 until `insert` sets the real one under the lock.
        let (task, rx) = Task::new(
            id,
            0,
            command,
            payload,
            failures,
            created_at_ms,
            span,
            timing,
            key.map(Box::from),
            group.map(Arc::from),
        );
        loop {
            // A durable command is written (and acknowledged by the store) before it is
            // queued; the record is removed again if it is not queued after all (refused,
            // a duplicate, a full lane, or this submit dropped while it waits).
            let mut written = None;
            let mut _key_guard = None;
            if let Some(journal) = &self.journal {
                match self
                    .before_write(&task, lane_id, key, &mut room_until, fire.is_some())
                    .await?
                {
                    BeforeWrite::Duplicate(accepted) => return Ok(accepted),
                    BeforeWrite::Write { index, key_guard } => {
                        lane = LaneRef::Index(index);
                        _key_guard = key_guard;
                    }
                }
                let record = self.record_of(&task, lane_id);
                let op = match fire {
                    Some(schedule) => {
                        let mut schedule = Box::new(schedule.clone());
                        schedule.last_command_id = Some(task.id);
                        StorageOp::FireSchedule {
                            command: record,
                            schedule,
                        }
                    }
                    None => StorageOp::SaveCommand(record),
                };
                journal.write_durably(op).await?;
                written = Some(Written {
                    queue: self,
                    task: &task,
                });
            }
            match self.insert(task.clone(), lane) {
                Ok(()) => {
                    if let Some(written) = written {
                        std::mem::forget(written);
                    }
                    return Ok(Accepted {
                        id,
                        rx,
                        duplicate: false,
                    });
                }
                Err(Refused(error)) => return Err(error),
                Err(Duplicate(holder, rx)) => return Ok(self.duplicate_of(&holder, rx)),
                Err(Full { index, when_full }) => {
                    // Lost a race for room. A durable submit gives its record up (and its
                    // key's lock: never held while waiting) and writes it again once
                    // there is room.
                    drop(written);
                    drop(_key_guard);
                    let when_full = if fire.is_some() {
                        WhenFull::Reject
                    } else {
                        when_full
                    };
                    room_until = Some(self.wait_for_room(index, when_full, room_until).await?);
                    lane = LaneRef::Index(index);
                }
            }
        }
    }

    /// The checks before a durable write, which a refused command must not make: the
    /// lane exists, the queue takes commands, the key is free (else the duplicate is the
    /// answer), and there is room in the lane (waiting for it as the lane says). A keyed
    /// submit then takes its key's lock, held across the write until the command is
    /// queued, so two submits of one key never both write a record.
    async fn before_write(
        &self,
        task: &Arc<Task>,
        lane_id: &str,
        key: Option<&str>,
        room_until: &mut Option<Option<Instant>>,
        never_wait: bool,
    ) -> Result<BeforeWrite<'_>> {
        loop {
            let (index, when_full) = {
                let state = self.state.lock();
                if state.shutting_down {
                    return Err(LaneError::ShutdownInProgress);
                }
                let index = state.lane_index(lane_id)?;
                if key.is_some() && !state.started {
                    return Err(LaneError::QueueError(
                        "a submit with an idempotency key to a queue with storage must come \
                         after start(): the keys of the stored commands are read back at \
                         start"
                            .into(),
                    ));
                }
                if let Some((holder, rx)) = key.and_then(|key| state.join_holder(key)) {
                    drop(state);
                    return Ok(BeforeWrite::Duplicate(self.duplicate_of(&holder, rx)));
                }
                let lane = state.lane(index);
                (index, lane.is_full().then_some(lane.config.when_full))
            };
            if let Some(when_full) = when_full {
                let when_full = if never_wait {
                    WhenFull::Reject
                } else {
                    when_full
                };
                *room_until = Some(self.wait_for_room(index, when_full, *room_until).await?);
                continue;
            }
            let Some(key) = key else {
                return Ok(BeforeWrite::Write {
                    index,
                    key_guard: None,
                });
            };
            let guard = self.key_lock(key).lock().await;
            // Checked again under the key's lock: a submit of the same key may have
            // queued its command meanwhile.
            let joined = self.state.lock().join_holder(key);
            if let Some((holder, rx)) = joined {
                return Ok(BeforeWrite::Duplicate(self.duplicate_of(&holder, rx)));
            }
            debug_assert!(task.key.is_some());
            return Ok(BeforeWrite::Write {
                index,
                key_guard: Some(guard),
            });
        }
    }

    /// The store's record of a command about to be queued.
    fn record_of(&self, task: &Task, lane_id: &str) -> StoredCommand {
        StoredCommand {
            id: task.id,
            lane_id: lane_id.to_owned(),
            command_type: task.command.command_type().to_owned(),
            payload: task.payload.clone().unwrap_or_default(),
            attempts: task.failures(),
            created_at: task.created_at_ms,
            not_before: task.timing.not_before_ms,
            start_by: task.timing.start_by_ms,
            key: task.key.as_deref().map(str::to_owned),
            group: task.group.as_deref().map(str::to_owned),
            replayable: task.payload.is_some(),
        }
    }

    /// The lock of idempotency key `key` (one of 64, by hash: a collision only makes two
    /// keys' durable submits take turns).
    fn key_lock(&self, key: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        const LOCKS: usize = 64;
        let locks = self
            .key_locks
            .get_or_init(|| (0..LOCKS).map(|_| tokio::sync::Mutex::new(())).collect());
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        &locks[(hash % LOCKS as u64) as usize]
    }

    /// Reports a submit that found its idempotency key held by `holder` (event and
    /// observers) and returns the holder's id with the receiver `rx` of its result.
    fn duplicate_of(&self, holder: &Task, rx: oneshot::Receiver<Result<Value>>) -> Accepted {
        if !self.observers.is_empty() || self.events.has_subscribers() {
            let lane = self.lane_name_unlocked(holder.lane());
            let info = info(holder, &lane, holder.failures() + 1);
            self.observe(&self.observers, |observer| observer.on_deduplicate(&info));
            self.events.emit_with(keys::COMMAND_DEDUPLICATED, || {
                json!({
                    "lane_id": &*lane,
                    "command_id": holder.id,
                    "command_type": holder.command.command_type(),
                    "key": holder.key.as_deref(),
                })
            });
        }
        Accepted {
            id: holder.id,
            rx,
            duplicate: true,
        }
    }

    /// Tells the observers of a submit refused by a full lane; returns the error.
    fn report_full(&self, error: LaneError) -> LaneError {
        if let LaneError::LaneFull { lane, .. } = &error {
            self.observe(&self.observers, |observer| observer.on_reject_full(lane));
        }
        error
    }

    /// Waits until lane `index` has room for a command, as its `when_full` says: fails
    /// at once for [`WhenFull::Reject`], or waits until the deadline (`until`, set by an
    /// earlier wait of the same submit, or the lane's timeout from now). Returns the
    /// deadline, for a submit that must wait again after losing a race for the room.
    async fn wait_for_room(
        &self,
        index: LaneIdx,
        when_full: WhenFull,
        until: Option<Option<Instant>>,
    ) -> Result<Option<Instant>> {
        let full = |state: &mut crate::scheduler::State| {
            let lane = &mut state.lanes[index as usize];
            lane.rejected_full += 1;
            LaneError::LaneFull {
                lane: lane.id.to_string(),
                limit: lane.config.max_waiting.unwrap_or_default(),
            }
        };
        let WhenFull::Wait { timeout } = when_full else {
            let error = full(&mut self.state.lock());
            return Err(self.report_full(error));
        };
        let until = until.unwrap_or_else(|| timeout.and_then(|t| Instant::now().checked_add(t)));
        let _waiting = self.room_waiter();
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state.lock();
                if state.shutting_down {
                    return Err(LaneError::ShutdownInProgress);
                }
                if !state.lane(index).is_full() {
                    return Ok(until);
                }
                if until.is_some_and(|until| until <= Instant::now()) {
                    let error = full(&mut state);
                    drop(state);
                    return Err(self.report_full(error));
                }
            }
            match until {
                Some(until) => {
                    let _ = tokio::time::timeout_at(until, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Puts an accepted task in its lane (delayed until its start time, if it has one),
    /// arms its start-by deadline and dispatches.
    fn insert(self: &Arc<Self>, task: Arc<Task>, lane_ref: LaneRef<'_>) -> Result<(), Insert> {
        let mut effects = Effects::default();
        let lane;
        {
            let mut state = self.state.lock();
            let now = Instant::now();
            if state.shutting_down {
                return Err(Refused(LaneError::ShutdownInProgress));
            }
            let index = match lane_ref {
                LaneRef::Index(index) => index,
                LaneRef::Name(name) => state.lane_index(name).map_err(Refused)?,
            };
            if let Some((holder, rx)) = task.key.as_deref().and_then(|key| state.join_holder(key)) {
                return Err(Duplicate(holder, rx));
            }
            let target = state.lane(index);
            if target.is_full() {
                return Err(Full {
                    index,
                    when_full: target.config.when_full,
                });
            }
            task.set_lane(index);
            state.add_live(&task);
            if task.timing.delay.is_zero() {
                effects
                    .signals
                    .extend(state.enqueue(task.clone(), now, false));
            } else {
                // At most 100 years ahead (checked at the boundary), which the clock holds.
                let at = task
                    .origin
                    .and_then(|origin| origin.checked_add(task.timing.delay))
                    .unwrap_or(now);
                state.set_not_before(&task, at);
            }
            state.arm_deadline(&task);
            self.dispatch_locked(&mut state, now, &mut effects);
            self.capture_depths(&state, &mut effects, &[task.lane()]);
            lane = (!self.observers.is_empty() || self.events.has_subscribers())
                .then(|| self.lane_name(&state, task.lane()));
        }
        if let Some(lane) = lane {
            let lane: &str = &lane;
            let info = info(&task, lane, task.failures() + 1);
            let delay = task.timing.delay;
            self.observe(&self.observers, |observer| {
                observer.on_submit(&info);
                if !delay.is_zero() {
                    observer.on_delay(&info, delay);
                }
            });
            self.events.emit_with(keys::COMMAND_SUBMITTED, || {
                json!({ "lane_id": &*lane, "command_id": task.id, "command_type": task.command.command_type() })
            });
        }
        self.apply(effects, false);
        Ok(())
    }

    /// Drops the journal record of a command that was never queued.
    fn forget(&self, task: &Task) {
        if let Some(journal) = &self.journal {
            journal.write(StorageOp::RemoveCommand(task.id));
        }
    }

    /// Puts a recovered command at the FRONT of its lane (ahead of anything submitted
    /// before `start`); the manager feeds them newest first, so they keep their order.
    /// A recovered delayed command waits for the rest of its delay (none if it fell due
    /// while the queue was down); a recovered deadline still holds.
    pub(crate) fn recover(self: &Arc<Self>, task: Arc<Task>) {
        let mut state = self.state.lock();
        let now = Instant::now();
        state.add_live(&task);
        state.arm_deadline(&task);
        if task.timing.delay.is_zero() {
            let _ = state.enqueue(task, now, true);
        } else {
            let at = task
                .origin
                .and_then(|origin| origin.checked_add(task.timing.delay))
                .unwrap_or(now);
            state.set_not_before(&task, at);
        }
    }
}

/// Refuses an empty (or blank) command type, as an empty lane id is refused: it would
/// name nothing in events, metrics and dead letters.
pub(crate) fn check_command_type(command_type: &str) -> Result<()> {
    if command_type.trim().is_empty() {
        return Err(LaneError::InvalidInput(format!(
            "command type must not be empty or blank (got {command_type:?}); give the command \
             a name, as its handler is registered under"
        )));
    }
    Ok(())
}

/// A new command's lane: known already (looked up before a journal write), or by name.
#[derive(Clone, Copy)]
enum LaneRef<'a> {
    Index(LaneIdx),
    Name(&'a str),
}

/// Why [`CommandQueue::insert`] did not queue a command.
enum Insert {
    /// Refused for good (unknown lane, shutting down).
    Refused(LaneError),
    /// The lane is at its `max_waiting`; the command was not queued.
    Full { index: LaneIdx, when_full: WhenFull },
    /// A live command holds the task's idempotency key; `rx` receives its result.
    Duplicate(Arc<Task>, oneshot::Receiver<Result<Value>>),
}
use Insert::{Duplicate, Full, Refused};

/// What [`CommandQueue::before_write`] found.
enum BeforeWrite<'a> {
    /// The key is held by a live command: this is the answer.
    Duplicate(Accepted),
    /// Write the record, then queue the command in lane `index` (holding the key's lock).
    Write {
        index: LaneIdx,
        key_guard: Option<tokio::sync::MutexGuard<'a, ()>>,
    },
}

/// A durable command's record, written but not yet queued: dropped (the submit was
/// refused, a duplicate, or itself dropped), it removes the record.
struct Written<'a> {
    queue: &'a CommandQueue,
    task: &'a Task,
}

impl Drop for Written<'_> {
    fn drop(&mut self) {
        self.queue.forget(self.task);
    }
}

/// A command accepted by [`CommandQueue::accept`]: a new one, or (`duplicate`) the live
/// command that held the submit's idempotency key.
pub(super) struct Accepted {
    pub(super) id: CommandId,
    rx: oneshot::Receiver<Result<Value>>,
    duplicate: bool,
}

impl Accepted {
    fn into_handle(self, queue: &Arc<CommandQueue>) -> CommandHandle {
        if self.duplicate {
            CommandHandle::duplicate(self.id, Arc::downgrade(queue), self.rx)
        } else {
            CommandHandle::new(self.id, Arc::downgrade(queue), self.rx)
        }
    }
}

/// Counts a submit waiting for room while it waits (also when its future is dropped).
pub(super) struct RoomWaiter<'a>(&'a AtomicUsize);

impl CommandQueue {
    /// Counts the caller as waiting on `room` until the guard is dropped (`apply` wakes
    /// room waiters only while some wait).
    pub(super) fn room_waiter(&self) -> RoomWaiter<'_> {
        self.room_waiters.fetch_add(1, Ordering::Relaxed);
        RoomWaiter(&self.room_waiters)
    }
}

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
