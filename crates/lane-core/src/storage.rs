//! The [`Storage`] hook: a durable journal of accepted commands and dead letters.
//!
//! The queue writes to it through one journal task per queue, so operations reach the
//! store in the order they happened and concurrent submits share one
//! [`Storage::apply`] call (group commit). `lane-reliability` provides `LocalStorage`
//! (SQLite); recovery on start is done by the queue itself.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::CommandStatus;
use crate::command::CommandId;
use crate::error::Result;
use crate::schedule::ScheduleInfo;

use record::DeadLetter;

/// An accepted command as the store keeps it (until it ends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCommand {
    /// The command's id (unique per store).
    pub id: CommandId,
    /// The lane it was submitted to.
    pub lane_id: String,
    /// Its type; recovery runs it with the handler registered for this type.
    pub command_type: String,
    /// Its JSON payload.
    pub payload: Value,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Submission time in milliseconds since the Unix epoch.
    pub created_at: u64,
    /// A delayed command: when it may start, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// Its start-by deadline, in milliseconds since the Unix epoch: not started by then,
    /// it never runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_by: Option<u64>,
    /// Its idempotency key, if it was submitted with one: recovered, it still holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its group inside its lane, if it was submitted with one: recovered, it waits in
    /// that group again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Whether recovery can run it again: true for a replayable command (and a
    /// [`Command`](crate::Command) that gives a
    /// [`replay_payload`](crate::Command::replay_payload)); false for one submitted as a
    /// `Box<dyn Command>` without one (its `payload` is `null`), which is recorded so it
    /// is listed while it waits or runs, and which recovery turns into a dead letter
    /// saying it was not replayable. A record without the field is replayable.
    #[serde(default = "replayable", skip_serializing_if = "is_replayable")]
    pub replayable: bool,
}

fn replayable() -> bool {
    true
}

fn is_replayable(replayable: &bool) -> bool {
    *replayable
}

/// A dead letter as the store keeps it.
pub type StoredDeadLetter = DeadLetter;

/// The dead letter record, defined here so that the stored types depend on nothing above
/// them; [`dead_letter`](crate::dead_letter) re-exports it (its public path).
pub(crate) mod record {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    use crate::command::CommandId;

    /// A command that failed for good.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct DeadLetter {
        /// The command's id.
        pub command_id: CommandId,
        /// Its type.
        pub command_type: String,
        /// The lane it ran in.
        pub lane_id: String,
        /// The last error.
        pub error: String,
        /// How many times it ran.
        pub attempts: u32,
        /// When it failed for good, in milliseconds since the Unix epoch.
        pub failed_at: u64,
        /// The JSON payload of a replayable command, so it can be re-driven; `None` for
        /// in-process commands.
        pub payload: Option<Value>,
    }
}

/// One journal write, as batched into [`Storage::apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum StorageOp {
    /// Insert or replace a command.
    SaveCommand(StoredCommand),
    /// Remove a finished command.
    RemoveCommand(CommandId),
    /// Record a dead letter (same command id: replace).
    SaveDeadLetter(StoredDeadLetter),
    /// Remove the dead letter of a command (re-driven, evicted or taken).
    RemoveDeadLetter(CommandId),
    /// Remove every dead letter.
    ClearDeadLetters,
    /// A command finished and its lane keeps it: remove the command (if stored), store
    /// its record (same id: replace), then drop the records of its lane and state beyond
    /// the newest `keep_last`, and every record whose `expires_at_ms` passed.
    SaveFinished(StoredFinished),
    /// Insert or replace a recurring schedule (by name).
    SaveSchedule(ScheduleInfo),
    /// Remove a recurring schedule.
    RemoveSchedule(String),
    /// A schedule fired an instant: store the command it submitted and the schedule moved
    /// past that instant together, in one transaction (so a crash never fires an instant
    /// twice nor loses it).
    FireSchedule {
        /// The command the instant submitted.
        command: StoredCommand,
        /// The schedule after the instant (boxed: the rare op must not make every op
        /// as large).
        schedule: Box<ScheduleInfo>,
    },
}

/// A finished command's record, kept by its lane's [`Retention`](crate::Retention).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinished {
    /// The command as lookups show it: a final state, its times, result or error.
    pub status: CommandStatus,
    /// Records of its lane and state to keep at most (this one included).
    pub keep_last: usize,
    /// When the record expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// A durable store for accepted commands and dead letters.
///
/// ```
/// use a3s_lane::{Result, Storage, StoredCommand, StoredDeadLetter};
/// use async_trait::async_trait;
/// use std::sync::Mutex;
///
/// #[derive(Default)]
/// struct InMemory(Mutex<Vec<StoredCommand>>);
///
/// #[async_trait]
/// impl Storage for InMemory {
///     async fn save_command(&self, command: StoredCommand) -> Result<()> {
///         let mut commands = self.0.lock().unwrap();
///         commands.retain(|c| c.id != command.id);
///         commands.push(command);
///         Ok(())
///     }
///     async fn load_commands(&self) -> Result<Vec<StoredCommand>> {
///         Ok(self.0.lock().unwrap().clone())
///     }
///     async fn remove_command(&self, id: u64) -> Result<()> {
///         self.0.lock().unwrap().retain(|c| c.id != id);
///         Ok(())
///     }
///     async fn save_dead_letter(&self, _letter: StoredDeadLetter) -> Result<()> { Ok(()) }
///     async fn load_dead_letters(&self) -> Result<Vec<StoredDeadLetter>> { Ok(vec![]) }
///     async fn clear_dead_letters(&self) -> Result<()> { Ok(()) }
///     async fn clear_all(&self) -> Result<()> {
///         self.0.lock().unwrap().clear();
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Inserts or replaces a command (same id: replace).
    async fn save_command(&self, command: StoredCommand) -> Result<()>;
    /// All unfinished commands, in submission order.
    async fn load_commands(&self) -> Result<Vec<StoredCommand>>;
    /// Removes a finished command; removing an unknown id is not an error.
    async fn remove_command(&self, id: CommandId) -> Result<()>;
    /// Records a dead letter.
    async fn save_dead_letter(&self, letter: StoredDeadLetter) -> Result<()>;
    /// All dead letters, oldest first.
    async fn load_dead_letters(&self) -> Result<Vec<StoredDeadLetter>>;
    /// Removes every dead letter.
    async fn clear_dead_letters(&self) -> Result<()>;

    /// Removes the dead letter of `command_id`; an unknown id is not an error.
    ///
    /// The default rewrites the whole list through the methods above, which is neither
    /// fast nor atomic; a store should override it.
    async fn remove_dead_letter(&self, command_id: CommandId) -> Result<()> {
        let letters = self.load_dead_letters().await?;
        if !letters.iter().any(|l| l.command_id == command_id) {
            return Ok(());
        }
        self.clear_dead_letters().await?;
        for letter in letters.into_iter().filter(|l| l.command_id != command_id) {
            self.save_dead_letter(letter).await?;
        }
        Ok(())
    }
    /// Removes everything.
    async fn clear_all(&self) -> Result<()>;

    /// Stores a finished command's record ([`StorageOp::SaveFinished`]). The default
    /// keeps no records: it only removes the command.
    async fn save_finished(&self, finished: StoredFinished) -> Result<()> {
        self.remove_command(finished.status.id).await
    }

    /// Stores a recurring schedule ([`StorageOp::SaveSchedule`]). The default refuses: a
    /// store that cannot keep schedules must not let a durable queue take one it would
    /// lose at a restart.
    async fn save_schedule(&self, schedule: ScheduleInfo) -> Result<()> {
        Err(crate::LaneError::Storage(format!(
            "this store keeps no recurring schedules, so schedule '{}' would be lost at a \
             restart; use LocalStorage, or a store that implements save_schedule",
            schedule.schedule.name
        )))
    }

    /// Removes a recurring schedule; an unknown name is not an error (the default does
    /// nothing, as it keeps none).
    async fn remove_schedule(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// The stored recurring schedules (the default has none).
    async fn load_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(Vec::new())
    }

    /// The finished commands' records that have not expired, oldest finish first (the
    /// default has none).
    async fn load_finished(&self) -> Result<Vec<StoredFinished>> {
        Ok(Vec::new())
    }

    /// Applies a batch of writes durably, in order. The default applies them one by one;
    /// a store should override it to commit the whole batch at once.
    async fn apply(&self, ops: Vec<StorageOp>) -> Result<()> {
        for op in ops {
            match op {
                StorageOp::SaveCommand(command) => self.save_command(command).await?,
                StorageOp::RemoveCommand(id) => self.remove_command(id).await?,
                StorageOp::SaveDeadLetter(letter) => self.save_dead_letter(letter).await?,
                StorageOp::RemoveDeadLetter(id) => self.remove_dead_letter(id).await?,
                StorageOp::ClearDeadLetters => self.clear_dead_letters().await?,
                StorageOp::SaveFinished(finished) => self.save_finished(finished).await?,
                StorageOp::SaveSchedule(schedule) => self.save_schedule(schedule).await?,
                StorageOp::RemoveSchedule(name) => self.remove_schedule(&name).await?,
                // Not atomic here: a store should override `apply`.
                StorageOp::FireSchedule { command, schedule } => {
                    self.save_command(command).await?;
                    self.save_schedule(*schedule).await?;
                }
            }
        }
        Ok(())
    }

    /// The largest command id the store has ever held, so new ids never collide with
    /// recovered ones. The default scans [`Storage::load_commands`], dead letters and
    /// finished records.
    async fn max_command_id(&self) -> Result<CommandId> {
        let commands = self.load_commands().await?;
        let letters = self.load_dead_letters().await?;
        let finished = self.load_finished().await?;
        Ok(commands
            .iter()
            .map(|c| c.id)
            .chain(letters.iter().map(|l| l.command_id))
            .chain(finished.iter().map(|f| f.status.id))
            .max()
            .unwrap_or(0))
    }
}

fn _storage_is_dyn_compatible(_: std::sync::Arc<dyn Storage>) {}
