//! Inspecting a queue: one command's record ([`RedisQueue::command`]), a lane's commands
//! by state ([`RedisQueue::list_commands`]) and the queue's counts ([`RedisQueue::stats`]).

use std::collections::HashMap;

use lane_core::{CommandState, CommandStatus, LaneStatus, Page, QueueStats, Result};
use redis::Value as RedisValue;
use serde_json::Value;

use super::RedisQueue;
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{
    self, Entry, array, decode_error, decode_failure, int, opt_string, parse_run, redis_error,
    string,
};

/// Where a command of a Redis queue is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteState {
    /// Waiting in its lane.
    Pending,
    /// Running on a worker.
    Running,
    /// Waiting for its start time, or for its retry delay after a failed run.
    Delayed,
    /// Finished successfully.
    Done,
    /// Cancelled.
    Cancelled,
    /// Failed for good; kept as a dead letter.
    Dead,
    /// Not started by its start-by deadline; it never ran.
    Expired,
}

/// A command's record in a Redis queue ([`RedisQueue::command`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteCommand {
    /// Its id.
    pub id: u64,
    /// Its lane.
    pub lane_id: String,
    /// Its handler type.
    pub command_type: String,
    /// Its payload.
    pub payload: Value,
    /// Where it is.
    pub state: RemoteState,
    /// How many runs started (a run lost with its worker counts too).
    pub attempts: u32,
    /// How many runs failed.
    pub failures: u32,
    /// The worker of the latest run.
    pub worker: Option<String>,
    /// The fencing token of the latest run: only the run holding it may finish the command.
    /// Tokens grow with every claim, so they order claims across all workers.
    pub fencing_token: Option<u64>,
    /// When the latest run was claimed, in microseconds since the Unix epoch (Redis clock).
    pub started_at_us: Option<u64>,
    /// When it was submitted (or redriven), in milliseconds since the Unix epoch (Redis
    /// clock); `None` for a command submitted by a version that did not record it.
    pub submitted_at_ms: Option<u64>,
    /// When it finished, in microseconds since the Unix epoch (Redis clock).
    pub finished_at_us: Option<u64>,
    /// The result, once finished.
    pub result: Option<Result<Value>>,
}

/// The largest offset a listing passes to Redis.
const MAX_OFFSET: usize = 1 << 50;

/// Fields per command in the replies of inspect.lua and list.lua.
const DESCRIBED_FIELDS: usize = 8;

/// One command as inspect.lua and list.lua describe it: id, state, entry, worker, run,
/// finish time, outcome, data (see `describe_live` in the prelude).
struct Described {
    id: u64,
    state: RemoteState,
    entry: String,
    worker: Option<String>,
    run: Option<String>,
    finished_us: Option<u64>,
    outcome: Option<String>,
    data: Option<String>,
}

impl Described {
    fn parse(fields: &[RedisValue]) -> Result<Self> {
        let [id, state, entry, worker, run, finished, outcome, data] = fields else {
            return Err(wire::protocol("command"));
        };
        let state = match string(state)?.as_str() {
            "pending" => RemoteState::Pending,
            "delayed" => RemoteState::Delayed,
            "running" => RemoteState::Running,
            "done" => RemoteState::Done,
            "cancelled" => RemoteState::Cancelled,
            "expired" => RemoteState::Expired,
            "dead" => RemoteState::Dead,
            _ => return Err(wire::protocol("command state")),
        };
        Ok(Self {
            id: u64::try_from(int(id)?).map_err(|_| wire::protocol("command id"))?,
            state,
            entry: string(entry)?,
            worker: opt_string(worker)?,
            run: opt_string(run)?,
            finished_us: opt_string(finished)?
                .and_then(|us| us.parse::<f64>().ok())
                .map(|us| us as u64),
            outcome: opt_string(outcome)?,
            data: opt_string(data)?,
        })
    }

    fn is_finished(&self) -> bool {
        !matches!(
            self.state,
            RemoteState::Pending | RemoteState::Delayed | RemoteState::Running
        )
    }

    /// Runs started: the entry counts those that ended before the last one, which is
    /// counted while it runs and, once finished, if there was one.
    fn attempts(&self, entry: &Entry<'_>) -> u32 {
        let last = self.state == RemoteState::Running || (self.is_finished() && self.run.is_some());
        entry.attempts + u32::from(last)
    }

    fn remote(&self) -> Result<RemoteCommand> {
        let entry = Entry::parse(&self.entry)?;
        let (fencing_token, started_at_us) = self.run.as_deref().map_or((None, None), parse_run);
        let ran = self.is_finished() && self.run.is_some();
        Ok(RemoteCommand {
            id: self.id,
            lane_id: entry.lane.to_owned(),
            command_type: entry.command_type.to_owned(),
            payload: serde_json::from_str(entry.payload)
                .unwrap_or_else(|_| Value::String(entry.payload.into())),
            state: self.state,
            attempts: self.attempts(&entry),
            failures: entry.failures + u32::from(ran && self.state == RemoteState::Dead),
            worker: self.worker.clone(),
            fencing_token,
            started_at_us,
            submitted_at_ms: entry.submitted_at_ms,
            finished_at_us: self.finished_us,
            result: match (self.outcome.as_deref(), self.data.as_deref()) {
                (Some("ok"), Some(data)) => Some(serde_json::from_str(data).map_err(Into::into)),
                (Some("err"), Some(data)) => Some(Err(decode_error(data))),
                _ => None,
            },
        })
    }

    fn status(&self) -> Result<CommandStatus> {
        let entry = Entry::parse(&self.entry)?;
        let state = match self.state {
            RemoteState::Pending => CommandState::Pending,
            RemoteState::Delayed => CommandState::Delayed,
            RemoteState::Running => CommandState::Running,
            RemoteState::Done => CommandState::Completed,
            RemoteState::Cancelled => CommandState::Cancelled,
            RemoteState::Dead => CommandState::DeadLettered,
            RemoteState::Expired => CommandState::Expired,
        };
        let mut status = CommandStatus::new(
            self.id,
            entry.lane,
            entry.command_type,
            state,
            self.attempts(&entry),
        );
        status.submitted_at_ms = entry.submitted_at_ms;
        status.started_at_ms = self
            .run
            .as_deref()
            .and_then(|run| parse_run(run).1)
            .map(|us| us / 1000);
        status.finished_at_ms = self.finished_us.map(|us| us / 1000);
        match (self.outcome.as_deref(), self.data.as_deref()) {
            (Some("ok"), Some(data)) => status.result = Some(serde_json::from_str(data)?),
            (Some("err"), Some(data)) => status.error = Some(decode_failure(data)),
            _ => {}
        }
        Ok(status)
    }
}

/// Counts of a Redis queue ([`RedisQueue::stats`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisQueueStats {
    /// Per-lane counts in the core's shape (`total_active` counts leases held by workers).
    pub queue: QueueStats,
    /// Registered workers.
    pub workers: usize,
    /// Workers waiting for work.
    pub idle_workers: usize,
    /// Lifetime counters: `submitted`, `completed`, `retried`, `dead`, `cancelled`,
    /// `requeued` (taken back from a dead worker), `released`, `stale` (completions
    /// rejected by fencing), `workers_lost`, `expired` (not started by their start-by
    /// deadline), `rejected_full` (refused for a full lane), `deduplicated` (submits
    /// whose idempotency key a live command held), `schedule_fired` and
    /// `schedule_skipped` (instants of recurring schedules fired, and skips: a range of
    /// missed instants, or one refused by its lane, counts once).
    pub counters: HashMap<String, u64>,
}

impl RedisQueueStats {
    /// A lifetime counter, 0 if it never moved.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

impl RedisQueue {
    /// A command's record, or `None` if it is unknown or its lane no longer keeps it
    /// (see [`Retention`](lane_core::Retention)).
    pub async fn command(&self, id: u64) -> Result<Option<RemoteCommand>> {
        self.describe(id)
            .await?
            .map(|described| described.remote())
            .transpose()
    }

    /// A command as [`QueueClient::command`](lane_core::QueueClient::command) shows it.
    pub(crate) async fn command_status(&self, id: u64) -> Result<Option<CommandStatus>> {
        self.describe(id)
            .await?
            .map(|described| described.status())
            .transpose()
    }

    async fn describe(&self, id: u64) -> Result<Option<Described>> {
        let reply: RedisValue = SCRIPTS
            .inspect
            .key(&self.inner.prefix)
            .arg(id)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        let fields = array(reply)?;
        if fields.is_empty() {
            return Ok(None);
        }
        Described::parse(&fields).map(Some)
    }

    /// A lane's commands in `state`, paged, as
    /// [`QueueClient::list_commands`](lane_core::QueueClient::list_commands) says: pending
    /// ones in start order, delayed ones by due time, running ones by claim time,
    /// finished ones and dead letters newest first (finished ones while the lane's
    /// [`Retention`](lane_core::Retention) keeps them). Read in one script, so a page is
    /// one instant's view. Listing delayed commands walks the queue's delayed set up to
    /// the page's last one of the lane; listing running ones reads every running command.
    pub async fn list_commands(
        &self,
        lane: &str,
        state: CommandState,
        page: Page,
    ) -> Result<Vec<CommandStatus>> {
        page.validate()?;
        let name = match state {
            CommandState::Pending => "pending",
            CommandState::Delayed => "delayed",
            CommandState::Running => "running",
            CommandState::Completed => "done",
            CommandState::Cancelled => "cancelled",
            CommandState::Expired => "expired",
            CommandState::DeadLettered => "dead",
            // A final failure is always a dead letter on Redis: none are ever failed.
            _ => "failed",
        };
        let reply: RedisValue = SCRIPTS
            .list
            .key(&self.inner.prefix)
            .arg(lane)
            .arg(name)
            // No lane holds 2^50 commands; the bound keeps the offset exact in Lua.
            .arg(page.offset.min(MAX_OFFSET))
            .arg(page.limit)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        let mut parts = array(reply)?.into_iter();
        let status = parts.next().ok_or_else(|| wire::protocol("list"))?;
        if string(&status)? == "unknown_lane" {
            return Err(self.lane_not_found(lane).await);
        }
        let commands = array(parts.next().ok_or_else(|| wire::protocol("list"))?)?;
        commands
            .chunks(DESCRIBED_FIELDS)
            .map(|fields| Described::parse(fields)?.status())
            .collect()
    }

    /// Counts per lane and for the queue.
    pub async fn stats(&self) -> Result<RedisQueueStats> {
        let reply: RedisValue = SCRIPTS
            .stats
            .key(&self.inner.prefix)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        let mut parts = array(reply)?.into_iter();
        let mut next = || parts.next().ok_or_else(|| wire::protocol("stats"));
        let lanes = array(next()?)?;
        let delayed = int(&next()?)? as usize;
        let workers = int(&next()?)? as usize;
        let idle_workers = int(&next()?)? as usize;
        let counters_raw = array(next()?)?;
        let mut stats = RedisQueueStats {
            queue: QueueStats {
                total_delayed: delayed,
                ..QueueStats::default()
            },
            workers,
            idle_workers,
            counters: HashMap::new(),
        };
        for lane in lanes.chunks(12) {
            let [
                id,
                priority,
                max,
                pending,
                active,
                paused,
                throttled,
                effective_priority,
                delayed,
                expired,
                rejected_full,
                max_waiting,
            ] = lane
            else {
                return Err(wire::protocol("lane stats"));
            };
            let id = string(id)?;
            let priority = int(priority)? as u8;
            let status = LaneStatus {
                id: id.clone(),
                priority,
                effective_priority: int(effective_priority)? as u8,
                pending: int(pending)? as usize,
                active: int(active)?.max(0) as usize,
                min: 0,
                max: int(max)? as usize,
                paused: int(paused)? == 1,
                throttled: int(throttled)? == 1,
                delayed: int(delayed)?.max(0) as usize,
                expired: int(expired)?.max(0) as u64,
                rejected_full: int(rejected_full)?.max(0) as u64,
                max_waiting: opt_string(max_waiting)?
                    .filter(|max| !max.is_empty())
                    .map(|max| max.parse().map_err(|_| wire::protocol("lane stats")))
                    .transpose()?,
                // The Redis worker does not report abandoned runs to the stats hash yet.
                abandoned: 0,
                abandoned_running: 0,
            };
            stats.queue.total_pending += status.pending;
            stats.queue.total_active += status.active;
            stats.queue.lanes.insert(id, status);
        }
        for pair in counters_raw.chunks(2) {
            if let [name, value] = pair {
                stats
                    .counters
                    .insert(string(name)?, int(value)?.max(0) as u64);
            }
        }
        Ok(stats)
    }
}
