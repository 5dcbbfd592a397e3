//! What a `RedisQueue` reports, over all its producers and workers: [`RedisQueueStats`]
//! with each lane's [`RedisLaneStatus`], its dead letters and cancel outcomes, as the JSON
//! its promises settle with, and the shape of a [`RedisCommandHandle`].

use std::collections::HashMap;

use a3s_lane::{CancelOutcome, DeadLetter as CoreLetter, RedisQueueStats as CoreStats};
use napi_derive::napi;
use serde_json::{Value, json};

/// Counts of a Redis queue, over all its producers and workers.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct RedisQueueStats {
    /// Commands waiting to start, over all lanes.
    pub total_pending: u32,
    /// Commands running on workers, over all lanes.
    pub total_active: u32,
    /// Failed commands waiting for their retry delay.
    pub total_delayed: u32,
    /// Each lane's status by lane id.
    pub lanes: HashMap<String, RedisLaneStatus>,
    /// Workers registered with the queue.
    pub workers: u32,
    /// Workers waiting for work.
    pub idle_workers: u32,
    /// Lifetime counters: `submitted`, `completed`, `retried`, `dead`, `cancelled`,
    /// `requeued` (taken back from a dead worker), `released`, `stale` (results refused
    /// because the run's lease was taken over), `workers_lost`.
    pub counters: HashMap<String, f64>,
}

/// One lane of a Redis queue.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct RedisLaneStatus {
    /// The lane id.
    pub id: String,
    /// Its priority (lower runs first).
    pub priority: u32,
    /// Its priority now, after the boost its oldest pending command has earned by
    /// waiting (equal to `priority` without a `priorityBoost`).
    pub effective_priority: u32,
    /// Commands waiting to start.
    pub pending: u32,
    /// Commands running on workers.
    pub active: u32,
    /// Most of its commands that run at once, over all workers.
    pub max_concurrency: u32,
    /// Whether it is paused.
    pub paused: bool,
    /// Whether its rate limit holds it back now.
    pub throttled: bool,
}

/// A command submitted to a `RedisQueue` (from `submit` and `redrive`).
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone)]
pub struct RedisCommandHandle {
    /// The command's id in the queue (the same in every process).
    #[napi(readonly)]
    pub id: f64,
    /// Settles with the result from whichever worker ran the command, or rejects with its
    /// error: code `COMMAND_FAILED` (the message holds the handler's error and stack),
    /// `TIMEOUT`, `CANCELLED` or `HANDLER_NOT_FOUND`. A rejection nobody awaits is not
    /// reported as an unhandled rejection.
    #[napi(readonly, ts_type = "Promise<unknown>")]
    pub result: Value,
    /// Cancels the command: a pending or delayed one ends at once (`'cancelled'`); a
    /// running one has its handler's `ctx.signal` aborted on its worker (`'signalled'`)
    /// and ends as cancelled; `'finished'` when it already ended, `'unknown'` for no such
    /// command.
    #[napi(
        readonly,
        ts_type = "() => Promise<'cancelled' | 'signalled' | 'finished' | 'unknown'>"
    )]
    pub cancel: Value,
}

/// The stats as the JSON of [`RedisQueueStats`].
pub(crate) fn stats_json(stats: CoreStats) -> String {
    let lanes: serde_json::Map<String, Value> = stats
        .queue
        .lanes
        .into_values()
        .map(|lane| {
            let status = json!({
                "id": lane.id,
                "priority": lane.priority,
                "effectivePriority": lane.effective_priority,
                "pending": lane.pending,
                "active": lane.active,
                "maxConcurrency": lane.max,
                "paused": lane.paused,
                "throttled": lane.throttled,
            });
            (lane.id, status)
        })
        .collect();
    json!({
        "totalPending": stats.queue.total_pending,
        "totalActive": stats.queue.total_active,
        "totalDelayed": stats.queue.total_delayed,
        "lanes": lanes,
        "workers": stats.workers,
        "idleWorkers": stats.idle_workers,
        "counters": stats.counters,
    })
    .to_string()
}

/// A cancel outcome as the JSON of `'cancelled' | 'signalled' | 'finished' | 'unknown'`.
pub(crate) fn outcome_json(outcome: CancelOutcome) -> String {
    let name = match outcome {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Signalled => "signalled",
        CancelOutcome::AlreadyFinished => "finished",
        CancelOutcome::Unknown => "unknown",
    };
    format!("\"{name}\"")
}

/// The dead letters as the JSON of `Array<DeadLetter>`.
pub(crate) fn dead_letters_json(letters: Vec<CoreLetter>) -> String {
    let letters: Vec<Value> = letters
        .into_iter()
        .map(|letter| {
            json!({
                "commandId": letter.command_id,
                "commandType": letter.command_type,
                "laneId": letter.lane_id,
                "error": letter.error,
                "attempts": letter.attempts,
                "failedAt": letter.failed_at,
                "payload": letter.payload.unwrap_or(Value::Null),
            })
        })
        .collect();
    Value::Array(letters).to_string()
}
