//! A `LocalStorage` directory: the store of a durable in-process queue.
//!
//! Reads go through [`LocalStorage::read_snapshot`], which copies the store's files and
//! reads the copy: it works while the queue's process holds the store, and never changes
//! a file. What a store does not keep is not shown: lane settings (priorities, caps), pause
//! state, and which commands run (its unfinished commands show as pending, or delayed
//! until their start time). The subcommands that change the store (`cancel`,
//! `dead-letters redrive | purge`) open it as a queue would, so they are refused while
//! another process has it open. `pause` and `resume` are refused: a pause lives in the
//! process running the queue, not in its store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lane_core::{
    CancelOutcome, CommandFailure, CommandState, CommandStatus, LaneError, Page, Retention,
    Storage, StorageOp, StoredCommand, StoredFinished,
};
use lane_reliability::{LocalStorage, LocalStorageConfig, LocalStorageSnapshot};

use crate::output::{
    CancelView, CommandsView, DeadLettersView, LaneView, PurgeView, RedriveView, ShowView,
    StatsView,
};
use crate::{CliResult, Failure};

/// A store directory.
#[derive(Debug)]
pub(crate) struct StorageTarget {
    dir: PathBuf,
    /// Whether a store of an older schema may be migrated by a change (`--migrate`).
    migrate: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where an unfinished stored command is: pending, or delayed until its start time.
fn live_state(command: &StoredCommand, now: u64) -> CommandState {
    match command.not_before {
        Some(at) if at > now => CommandState::Delayed,
        _ => CommandState::Pending,
    }
}

fn live_status(command: &StoredCommand, now: u64) -> CommandStatus {
    let mut status = CommandStatus::new(
        command.id,
        command.lane_id.clone(),
        command.command_type.clone(),
        live_state(command, now),
        command.attempts,
    );
    status.submitted_at_ms = Some(command.created_at);
    status
}

fn dead_status(letter: &lane_core::DeadLetter) -> CommandStatus {
    let mut status = CommandStatus::new(
        letter.command_id,
        letter.lane_id.clone(),
        letter.command_type.clone(),
        CommandState::DeadLettered,
        letter.attempts,
    );
    status.finished_at_ms = Some(letter.failed_at);
    status.error = Some(CommandFailure {
        kind: "failed".into(),
        message: letter.error.clone(),
        timeout_ms: None,
    });
    status
}

/// Lists a page of commands over `lanes` (in that order) starting after `after`, a cursor
/// `LANE/OFFSET` that a previous page printed; `fetch` reads one lane's page.
pub(crate) async fn page_over_lanes(
    state: CommandState,
    lanes: Vec<String>,
    limit: usize,
    after: Option<&str>,
    mut fetch: impl AsyncFnMut(&str, Page) -> CliResult<Vec<CommandStatus>>,
) -> CliResult<CommandsView> {
    Page::first(limit).validate()?;
    let (mut index, mut offset) = match after {
        None => (0, 0),
        Some(cursor) => {
            let bad = || {
                Failure(format!(
                    "'{cursor}' is not a cursor of this listing; give --after the next_cursor \
                     a previous page printed"
                ))
            };
            let (lane, offset) = cursor.rsplit_once('/').ok_or_else(bad)?;
            let offset: usize = offset.parse().map_err(|_| bad())?;
            let index = lanes.iter().position(|l| l == lane).ok_or_else(bad)?;
            (index, offset)
        }
    };
    let mut commands = Vec::new();
    let mut next_cursor = None;
    while index < lanes.len() {
        let want = limit - commands.len();
        let page = fetch(&lanes[index], Page::new(offset, want)).await?;
        let got = page.len();
        commands.extend(page);
        if got == want {
            next_cursor = Some(format!("{}/{}", lanes[index], offset + got));
            break;
        }
        index += 1;
        offset = 0;
    }
    Ok(CommandsView {
        state: state.as_str(),
        commands,
        next_cursor,
    })
}

impl StorageTarget {
    /// The store in `dir`; an error when there is none (nothing is created).
    pub(crate) fn new(dir: &Path, migrate: bool) -> CliResult<Self> {
        if !dir.join(lane_reliability::LOCAL_STORAGE_FILE).is_file() {
            return Err(Failure(format!(
                "no LocalStorage store in {} ({} is missing)",
                dir.display(),
                lane_reliability::LOCAL_STORAGE_FILE
            )));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            migrate,
        })
    }

    /// The message for `pause` and `resume`.
    pub(crate) fn no_pause_state(&self) -> Failure {
        Failure(format!(
            "a LocalStorage directory ({}) keeps no pause state: a lane is paused in the \
             process that runs the queue (QueueClient::pause_lane there); pause and resume \
             work on Redis queues (--redis)",
            self.dir.display()
        ))
    }

    pub(crate) async fn snapshot(&self) -> CliResult<LocalStorageSnapshot> {
        LocalStorage::read_snapshot(&self.dir).await.map_err(|e| {
            Failure(format!(
                "cannot read the store in {}: {e}",
                self.dir.display()
            ))
        })
    }

    /// Opens the store to change it; refused while another process has it open.
    async fn open_for(&self, what: &str) -> CliResult<LocalStorage> {
        let config = LocalStorageConfig::new()
            .must_exist()
            .with_open_wait(std::time::Duration::ZERO)
            .with_migration(self.migrate);
        LocalStorage::open(&self.dir, config).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("locked") || text.contains("already open") {
                Failure(format!(
                    "refusing to {what}: the store in {} is in use by another process (a \
                     queue holds it open), and only that process may change it. Do it there \
                     (QueueClient), or stop that process first; the read-only subcommands \
                     (stats, lanes, commands, show, dead-letters list, watch) work meanwhile",
                    self.dir.display()
                ))
            } else if text.contains("written by an older a3s-lane") {
                Failure(format!(
                    "refusing to {what}: {e} — pass --migrate to migrate it (the a3s-lane \
                     that wrote it will then refuse it), or use that version's tool"
                ))
            } else {
                Failure(format!(
                    "cannot open the store in {}: {e}",
                    self.dir.display()
                ))
            }
        })
    }

    /// Writes `ops` in one transaction, then closes the store.
    async fn change(&self, what: &str, ops: Vec<StorageOp>) -> CliResult<()> {
        let storage = self.open_for(what).await?;
        let written = storage.apply(ops).await;
        let closed = storage.close().await;
        written?;
        closed?;
        Ok(())
    }

    /// `stats` (and `lanes`).
    pub(crate) async fn stats(&self) -> CliResult<StatsView> {
        let snapshot = self.snapshot().await?;
        let now = now_ms();
        let mut lanes: BTreeMap<String, LaneView> = BTreeMap::new();
        let lane = |lanes: &mut BTreeMap<String, LaneView>, id: &str| {
            lanes
                .entry(id.to_owned())
                .or_insert_with(|| LaneView {
                    id: id.to_owned(),
                    priority: None,
                    effective_priority: None,
                    pending: 0,
                    delayed: 0,
                    running: None,
                    max_concurrency: None,
                    max_waiting: None,
                    paused: None,
                    throttled: None,
                    dead_letters: Some(0),
                })
                .id
                .clone()
        };
        for command in &snapshot.commands {
            let id = lane(&mut lanes, &command.lane_id);
            let view = lanes.get_mut(&id).expect("just inserted");
            match live_state(command, now) {
                CommandState::Delayed => view.delayed += 1,
                _ => view.pending += 1,
            }
        }
        for letter in &snapshot.dead_letters {
            let id = lane(&mut lanes, &letter.lane_id);
            let view = lanes.get_mut(&id).expect("just inserted");
            view.dead_letters = Some(view.dead_letters.unwrap_or(0) + 1);
        }
        for finished in &snapshot.finished {
            lane(&mut lanes, &finished.status.lane_id);
        }
        let lanes: Vec<LaneView> = lanes.into_values().collect();
        Ok(StatsView {
            engine: "storage",
            target: self.dir.display().to_string(),
            total_pending: lanes.iter().map(|l| l.pending).sum(),
            total_delayed: lanes.iter().map(|l| l.delayed).sum(),
            total_running: None,
            dead_letters: Some(snapshot.dead_letters.len()),
            workers: None,
            idle_workers: None,
            lanes,
        })
    }

    /// Every command of the snapshot in `state`, by lane, in each listing's order.
    fn by_lane(
        snapshot: LocalStorageSnapshot,
        state: CommandState,
    ) -> CliResult<BTreeMap<String, Vec<CommandStatus>>> {
        let now = now_ms();
        let mut lanes: BTreeMap<String, Vec<CommandStatus>> = BTreeMap::new();
        let mut add = |status: CommandStatus| {
            lanes
                .entry(status.lane_id.clone())
                .or_default()
                .push(status);
        };
        match state {
            CommandState::Running => {
                return Err(Failure(
                    "a LocalStorage store does not record which commands run: its unfinished \
                     commands are listed as pending (or delayed until their start time)"
                        .into(),
                ));
            }
            CommandState::Pending => snapshot
                .commands
                .iter()
                .filter(|c| live_state(c, now) == CommandState::Pending)
                .for_each(|c| add(live_status(c, now))),
            CommandState::Delayed => {
                let mut delayed: Vec<&StoredCommand> = snapshot
                    .commands
                    .iter()
                    .filter(|c| live_state(c, now) == CommandState::Delayed)
                    .collect();
                delayed.sort_by_key(|c| (c.not_before, c.id));
                delayed.into_iter().for_each(|c| add(live_status(c, now)));
            }
            CommandState::DeadLettered => {
                // Newest first, as every listing of finished commands.
                snapshot
                    .dead_letters
                    .iter()
                    .rev()
                    .for_each(|d| add(dead_status(d)));
            }
            finished => snapshot
                .finished
                .into_iter()
                .rev()
                .filter(|f| f.status.state == finished)
                .for_each(|f| add(f.status)),
        }
        Ok(lanes)
    }

    /// `commands`.
    pub(crate) async fn commands(
        &self,
        state: CommandState,
        lane: Option<&str>,
        limit: usize,
        after: Option<&str>,
    ) -> CliResult<CommandsView> {
        let snapshot = self.snapshot().await?;
        let known = self.stats_of(&snapshot);
        let mut by_lane = Self::by_lane(snapshot, state)?;
        let lanes = match lane {
            Some(lane) if !known.iter().any(|k| k == lane) => {
                return Err(Failure(format!(
                    "lane '{lane}' not found in the store in {}; lanes with commands there: {}",
                    self.dir.display(),
                    if known.is_empty() {
                        "(none)".into()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            Some(lane) => vec![lane.to_owned()],
            None => known,
        };
        page_over_lanes(state, lanes, limit, after, async |lane, page| {
            Ok(by_lane
                .remove(lane)
                .unwrap_or_default()
                .into_iter()
                .skip(page.offset)
                .take(page.limit)
                .collect())
        })
        .await
    }

    /// The lanes the snapshot names, sorted.
    fn stats_of(&self, snapshot: &LocalStorageSnapshot) -> Vec<String> {
        let mut lanes: Vec<String> = snapshot
            .commands
            .iter()
            .map(|c| c.lane_id.clone())
            .chain(snapshot.dead_letters.iter().map(|d| d.lane_id.clone()))
            .chain(snapshot.finished.iter().map(|f| f.status.lane_id.clone()))
            .collect();
        lanes.sort();
        lanes.dedup();
        lanes
    }

    /// `show`.
    pub(crate) async fn show(&self, id: u64) -> CliResult<ShowView> {
        let snapshot = self.snapshot().await?;
        let now = now_ms();
        if let Some(command) = snapshot.commands.iter().find(|c| c.id == id) {
            return Ok(ShowView {
                status: live_status(command, now),
                payload: Some(command.payload.clone()),
            });
        }
        if let Some(letter) = snapshot.dead_letters.iter().find(|d| d.command_id == id) {
            return Ok(ShowView {
                status: dead_status(letter),
                payload: letter.payload.clone(),
            });
        }
        if let Some(finished) = snapshot.finished.into_iter().find(|f| f.status.id == id) {
            return Ok(ShowView {
                status: finished.status,
                payload: None,
            });
        }
        Err(self.unknown(id))
    }

    fn unknown(&self, id: u64) -> Failure {
        Failure(format!(
            "no command {id} in the store in {}: none was stored with that id, or it \
             finished and its record is not kept",
            self.dir.display()
        ))
    }

    /// `dead-letters list`.
    pub(crate) async fn dead_letters(&self, limit: usize) -> CliResult<DeadLettersView> {
        let mut dead_letters = self.snapshot().await?.dead_letters;
        dead_letters.truncate(limit);
        Ok(DeadLettersView { dead_letters })
    }

    /// `dead-letters redrive`: each dead letter becomes a fresh command of its lane again
    /// (no attempts, submitted now), run when the queue next starts; all in one
    /// transaction.
    pub(crate) async fn redrive(&self, id: Option<u64>) -> CliResult<RedriveView> {
        let letters = self.snapshot().await?.dead_letters;
        let chosen: Vec<_> = match id {
            Some(id) => {
                let letter = letters
                    .into_iter()
                    .find(|d| d.command_id == id)
                    .ok_or_else(|| self.no_dead_letter(id))?;
                vec![letter]
            }
            None => letters,
        };
        let now = now_ms();
        let mut ops = Vec::new();
        let mut redriven = Vec::new();
        for letter in chosen {
            let Some(payload) = letter.payload.clone() else {
                if id.is_some() {
                    return Err(Failure(format!(
                        "dead letter {} has no payload (an in-process command), so it cannot \
                         be run again",
                        letter.command_id
                    )));
                }
                continue;
            };
            // Built from JSON so that fields a newer store adds take their defaults.
            let command: StoredCommand = serde_json::from_value(serde_json::json!({
                "id": letter.command_id,
                "lane_id": letter.lane_id,
                "command_type": letter.command_type,
                "payload": payload,
                "attempts": 0,
                "created_at": now,
            }))?;
            ops.push(StorageOp::RemoveDeadLetter(letter.command_id));
            ops.push(StorageOp::SaveCommand(command));
            redriven.push(letter.command_id);
        }
        if !ops.is_empty() {
            self.change("redrive dead letters", ops).await?;
        }
        Ok(RedriveView { redriven })
    }

    fn no_dead_letter(&self, id: u64) -> Failure {
        Failure(format!(
            "no dead letter with command id {id} in the store in {}",
            self.dir.display()
        ))
    }

    /// `dead-letters purge`.
    pub(crate) async fn purge(&self, id: Option<u64>) -> CliResult<PurgeView> {
        let letters = self.snapshot().await?.dead_letters;
        let (ops, purged) = match id {
            Some(id) => {
                if !letters.iter().any(|d| d.command_id == id) {
                    return Err(self.no_dead_letter(id));
                }
                (vec![StorageOp::RemoveDeadLetter(id)], 1)
            }
            None => (vec![StorageOp::ClearDeadLetters], letters.len()),
        };
        self.change("purge dead letters", ops).await?;
        Ok(PurgeView { purged })
    }

    /// `cancel`: a stored unfinished command ends as cancelled (kept as a finished
    /// command's record, as its lane would by default) and never runs.
    pub(crate) async fn cancel(&self, id: u64) -> CliResult<CancelView> {
        let snapshot = self.snapshot().await?;
        let Some(command) = snapshot.commands.iter().find(|c| c.id == id) else {
            let finished = snapshot.dead_letters.iter().any(|d| d.command_id == id)
                || snapshot.finished.iter().any(|f| f.status.id == id);
            if finished {
                return Ok(CancelView {
                    id,
                    outcome: CancelOutcome::AlreadyFinished,
                });
            }
            return Err(self.unknown(id));
        };
        let now = now_ms();
        let mut status = live_status(command, now);
        status.state = CommandState::Cancelled;
        status.finished_at_ms = Some(now);
        status.error = Some(CommandFailure::from_error(&LaneError::Cancelled(
            "cancelled with the a3s-lane command-line tool".into(),
        )));
        let retention = Retention::default();
        let keep_for = u64::try_from(retention.keep_for().as_millis()).unwrap_or(u64::MAX);
        self.change(
            "cancel a command",
            vec![StorageOp::SaveFinished(StoredFinished {
                status,
                keep_last: retention.keep_last(),
                expires_at_ms: now.saturating_add(keep_for),
            })],
        )
        .await?;
        Ok(CancelView {
            id,
            outcome: CancelOutcome::Cancelled,
        })
    }
}
