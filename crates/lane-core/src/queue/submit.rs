//! Accepting commands: submit, the durable write, and the insert into a lane.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::effects::Effects;
use super::{CommandQueue, info, now_ms};
use crate::command::{Command, CommandId, ReplayableCommand};
use crate::error::{LaneError, Result};
use crate::event::keys;
use crate::handle::CommandHandle;
use crate::scheduler::{LaneIdx, Task};
use crate::storage::{StorageOp, StoredCommand};

impl CommandQueue {
    /// Submits a command; the receiver yields its final result.
    pub async fn submit(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
    ) -> Result<oneshot::Receiver<Result<Value>>> {
        let (_, rx) = self.accept(lane_id, command, None, 0).await?;
        Ok(rx)
    }

    /// Submits a command and returns a [`CommandHandle`] to await or cancel it.
    pub async fn submit_with_handle(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
    ) -> Result<CommandHandle> {
        let (id, rx) = self.accept(lane_id, command, None, 0).await?;
        Ok(CommandHandle::new(id, Arc::downgrade(self), rx))
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
        check_command_type(command_type)?;
        if let Err(error) = crate::payload::check_payload(&payload) {
            crate::payload::dismantle(payload);
            return Err(error);
        }
        let handler = self.handlers.get(command_type)?;
        let command = Box::new(ReplayableCommand {
            command_type: command_type.to_owned(),
            payload: payload.clone(),
            handler,
        });
        let (id, rx) = self.accept(lane_id, command, Some(payload), 0).await?;
        Ok(CommandHandle::new(id, Arc::downgrade(self), rx))
    }

    async fn accept(
        self: &Arc<Self>,
        lane_id: &str,
        command: Box<dyn Command>,
        payload: Option<Value>,
        failures: u32,
    ) -> Result<(CommandId, oneshot::Receiver<Result<Value>>)> {
        check_command_type(command.command_type())?;
        // Without a journal the lane is looked up in the lock hold that queues the
        // command: one acquisition of the state lock per submit.
        let mut lane = LaneRef::Name(lane_id);
        let id = self.next_id();
        let created_at_ms = now_ms();
        if let (Some(journal), Some(payload)) = (&self.journal, &payload) {
            // Checked before the durable write, which a refused command must not make.
            lane = LaneRef::Index({
                let state = self.state.lock();
                if state.shutting_down {
                    return Err(LaneError::ShutdownInProgress);
                }
                state.lane_index(lane_id)?
            });
            journal
                .write_durably(StorageOp::SaveCommand(StoredCommand {
                    id,
                    lane_id: lane_id.to_owned(),
                    command_type: command.command_type().to_owned(),
                    payload: payload.clone(),
                    attempts: failures,
                    created_at: created_at_ms,
                }))
                .await?;
        }
        // The submitter's span, if someone traces; its `lane.command` children are the runs.
        let span = tracing::Span::current();
        // Lane 0 until `insert` sets the real one under the lock.
        let (task, rx) = Task::new(id, 0, command, payload, failures, created_at_ms, span);
        self.insert(task, lane)?;
        Ok((id, rx))
    }

    /// Puts an accepted task at the back of its lane and dispatches.
    fn insert(self: &Arc<Self>, task: Arc<Task>, lane_ref: LaneRef<'_>) -> Result<()> {
        let mut effects = Effects::default();
        let lane;
        {
            let mut state = self.state.lock();
            let now = Instant::now();
            if state.shutting_down {
                drop(state);
                self.forget(&task);
                return Err(LaneError::ShutdownInProgress);
            }
            task.set_lane(match lane_ref {
                LaneRef::Index(index) => index,
                LaneRef::Name(name) => state.lane_index(name)?,
            });
            state.tasks.insert(task.id, task.clone());
            effects
                .signals
                .extend(state.enqueue(task.clone(), now, false));
            self.dispatch_locked(&mut state, now, &mut effects);
            self.capture_depths(&state, &mut effects, &[task.lane()]);
            lane = (!self.observers.is_empty() || self.events.has_subscribers())
                .then(|| self.lane_name(&state, task.lane()));
        }
        if let Some(lane) = lane {
            let lane: &str = &lane;
            let info = info(&task, lane, task.failures() + 1);
            self.observe(&self.observers, |observer| {
                observer.on_submit(&info);
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
        if let (Some(journal), Some(_)) = (&self.journal, &task.payload) {
            journal.write(StorageOp::RemoveCommand(task.id));
        }
    }

    /// Puts a recovered command at the FRONT of its lane (ahead of anything submitted
    /// before `start`); the manager feeds them newest first, so they keep their order.
    pub(crate) fn recover(self: &Arc<Self>, task: Arc<Task>) {
        let mut state = self.state.lock();
        state.tasks.insert(task.id, task.clone());
        let _ = state.enqueue(task, Instant::now(), true);
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
enum LaneRef<'a> {
    Index(LaneIdx),
    Name(&'a str),
}
