//! Inspecting a queue: one command's record ([`RedisQueue::command`]) and the queue's
//! counts ([`RedisQueue::stats`]).

use std::collections::HashMap;

use lane_core::{LaneStatus, QueueStats, Result};
use redis::Value as RedisValue;
use serde_json::Value;

use super::RedisQueue;
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{
    self, Entry, array, decode_error, int, opt_string, parse_run, redis_error, string,
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
    /// The result, once finished.
    pub result: Option<Result<Value>>,
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
    /// whose idempotency key a live command held).
    pub counters: HashMap<String, u64>,
}

impl RedisQueueStats {
    /// A lifetime counter, 0 if it never moved.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

impl RedisQueue {
    /// A command's record, or `None` if it is unknown or its record expired.
    pub async fn command(&self, id: u64) -> Result<Option<RemoteCommand>> {
        let reply: RedisValue = SCRIPTS
            .inspect
            .key(&self.inner.prefix)
            .arg(id)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        let [entry, worker, run, delayed, record] =
            <[RedisValue; 5]>::try_from(array(reply)?).map_err(|_| wire::protocol("inspect"))?;
        let payload_value =
            |payload: &str| serde_json::from_str(payload).unwrap_or(Value::String(payload.into()));
        if let Some(entry) = opt_string(&entry)? {
            let entry = Entry::parse(&entry)?;
            let mut record = RemoteCommand {
                id,
                lane_id: entry.lane.to_owned(),
                command_type: entry.command_type.to_owned(),
                payload: payload_value(entry.payload),
                state: if opt_string(&delayed)?.is_some() {
                    RemoteState::Delayed
                } else {
                    RemoteState::Pending
                },
                attempts: entry.attempts,
                failures: entry.failures,
                worker: None,
                fencing_token: None,
                started_at_us: None,
                result: None,
            };
            if let (Some(worker), Some(run)) = (opt_string(&worker)?, opt_string(&run)?) {
                let (token, started) = parse_run(&run);
                record.state = RemoteState::Running;
                record.worker = Some(worker);
                record.attempts = entry.attempts + 1;
                record.fencing_token = token;
                record.started_at_us = started;
            }
            return Ok(Some(record));
        }
        let fields = array(record)?
            .iter()
            .map(opt_string)
            .collect::<Result<Vec<_>>>()?;
        let [
            Some(entry),
            Some(state),
            last_worker,
            last_run,
            outcome,
            result,
        ] = <[Option<String>; 6]>::try_from(fields).map_err(|_| wire::protocol("inspect"))?
        else {
            return Ok(None);
        };
        let entry = Entry::parse(&entry)?;
        let state = match state.as_str() {
            "done" => RemoteState::Done,
            "cancelled" => RemoteState::Cancelled,
            "expired" => RemoteState::Expired,
            _ => RemoteState::Dead,
        };
        let (token, started) = last_run.as_deref().map_or((None, None), parse_run);
        let ran = last_run.is_some();
        let record = RemoteCommand {
            id,
            lane_id: entry.lane.to_owned(),
            command_type: entry.command_type.to_owned(),
            payload: payload_value(entry.payload),
            state,
            attempts: entry.attempts + u32::from(ran),
            failures: entry.failures + u32::from(ran && state == RemoteState::Dead),
            worker: last_worker,
            fencing_token: token,
            started_at_us: started,
            result: match (outcome.as_deref(), result) {
                (Some("ok"), Some(data)) => Some(serde_json::from_str(&data).map_err(Into::into)),
                (Some("err"), Some(data)) => Some(Err(decode_error(&data))),
                _ => None,
            },
        };
        Ok(Some(record))
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
