//! Controlling a queue: declaring, pausing and resuming lanes, cancelling commands,
//! reading and re-driving dead letters, and clearing the queue.

use std::time::Duration;

use lane_core::{CancelOutcome, DeadLetter, LaneError, RateLimitConfig, Result, WhenFull};

use super::{RedisCommandHandle, RedisQueue};
use crate::config::RedisLaneSpec;
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{self, redis_error};

impl RedisQueue {
    /// Declares a lane with the one lane model ([`LaneConfig`](lane_core::LaneConfig) and
    /// a priority, lower runs first), or updates it. Priority, cap, rate limit and
    /// priority boost apply to the next claims (a changed rate limit starts with a full
    /// bucket); timeout, cancel grace and retry policy to the next runs on every worker;
    /// `max_waiting` and `when_full` to the next submits of every producer; the
    /// retention to the next finishes and, at once, to what lookups and listings show.
    /// When a boost is added to a lane, the wait of the commands already pending counts
    /// from now. An option the Redis engine cannot honour is a
    /// [`LaneError::ConfigError`] naming it.
    pub async fn declare_lane(
        &self,
        id: &str,
        config: lane_core::LaneConfig,
        priority: u8,
    ) -> Result<()> {
        let lane = RedisLaneSpec::from_config(id, &config, priority)?;
        let (keep_last, keep_for_us) = lane.retention_args();
        let (kind, rate, period, burst) = match lane.rate_limit {
            RateLimitConfig::Unlimited => ("", 0, 0, 0),
            RateLimitConfig::TokenBucket {
                rate,
                period,
                burst,
            } => ("tb", rate, period.as_micros().max(1), burst),
            RateLimitConfig::SlidingWindow { limit, window } => {
                ("sw", limit, window.as_micros().max(1), 0)
            }
        };
        let (deadline, steps) = match lane.priority_boost.deadline() {
            None => (String::new(), String::new()),
            Some(deadline) => (
                deadline.as_micros().to_string(),
                lane.priority_boost
                    .steps()
                    .iter()
                    .map(|(time, boost)| format!("{}:{boost}", time.as_micros()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        SCRIPTS
            .declare
            .key(&self.inner.prefix)
            .arg(id)
            .arg(lane.priority)
            .arg(lane.max_concurrency)
            .arg(kind)
            .arg(rate)
            .arg(period.to_string())
            .arg(burst)
            .arg(deadline)
            .arg(steps)
            .arg(lane.run.encode())
            .arg(
                lane.max_waiting
                    .map(|max| max.to_string())
                    .unwrap_or_default(),
            )
            .arg(match lane.when_full {
                WhenFull::Reject => "reject",
                WhenFull::Wait { .. } => "wait",
            })
            .arg(match lane.when_full {
                WhenFull::Wait {
                    timeout: Some(timeout),
                } => timeout.as_millis().to_string(),
                _ => String::new(),
            })
            .arg(keep_last)
            .arg(keep_for_us)
            .arg(lane.groups_arg())
            .run::<()>(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))
    }

    /// Cancels a command: a pending or delayed one ends now; a running one is told
    /// through a durable flag that reaches its worker (even if the worker was busy or
    /// briefly disconnected), and ends as cancelled once it stops.
    pub async fn cancel(&self, id: u64) -> Result<CancelOutcome> {
        let reason = wire::encode_error(&LaneError::Cancelled("cancelled by request".into()));
        let outcome: String = SCRIPTS
            .cancel
            .key(&self.inner.prefix)
            .arg(id)
            .arg(self.inner.result_ttl_ms)
            .arg(reason)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        Ok(match outcome.as_str() {
            "cancelled" => CancelOutcome::Cancelled,
            "signalled" => CancelOutcome::Signalled,
            "finished" => CancelOutcome::AlreadyFinished,
            _ => CancelOutcome::Unknown,
        })
    }

    /// Stops claims from a lane on every worker until [`RedisQueue::resume_lane`].
    pub async fn pause_lane(&self, lane: &str) -> Result<()> {
        self.pause(lane, "pause", Duration::ZERO).await
    }

    /// Stops claims from a lane on every worker for `duration` (for example after an
    /// HTTP 429 with `Retry-After`); a shorter pause never cuts a longer one short.
    pub async fn pause_lane_for(&self, lane: &str, duration: Duration) -> Result<()> {
        lane_core::validate_timed_pause(duration)?;
        self.pause(lane, "pause_for", duration).await
    }

    /// Ends a pause (timed or not) of a lane.
    pub async fn resume_lane(&self, lane: &str) -> Result<()> {
        self.pause(lane, "resume", Duration::ZERO).await
    }

    async fn pause(&self, lane: &str, mode: &str, duration: Duration) -> Result<()> {
        let outcome: String = SCRIPTS
            .pause
            .key(&self.inner.prefix)
            .arg(lane)
            .arg(mode)
            .arg(duration.as_micros().to_string())
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        if outcome == "unknown" {
            return Err(self.lane_not_found(lane).await);
        }
        Ok(())
    }

    pub(super) async fn lane_not_found(&self, lane: &str) -> LaneError {
        let known: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("{}:lanes", self.inner.prefix))
            .query_async(&mut self.conn())
            .await
            .unwrap_or_default();
        lane_not_found(lane, known)
    }

    /// Dead letters (commands that failed for good), oldest first, at most `limit`.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let ids: Vec<(u64, f64)> = redis::cmd("ZRANGE")
            .arg(format!("{}:dead", self.inner.prefix))
            .arg(0)
            // Past i64 the stop index means "to the end" (-1), which Redis can parse.
            .arg(i64::try_from(limit - 1).unwrap_or(-1))
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(&e))?;
        let mut letters = Vec::with_capacity(ids.len());
        for (id, failed_at_us) in ids {
            let Some(command) = self.command(id).await? else {
                continue;
            };
            let error = match command.result {
                Some(Err(error)) => error.to_string(),
                _ => String::new(),
            };
            letters.push(DeadLetter {
                command_id: id,
                command_type: command.command_type,
                lane_id: command.lane_id,
                error,
                attempts: command.failures,
                failed_at: (failed_at_us / 1000.0) as u64,
                payload: Some(command.payload),
            });
        }
        Ok(letters)
    }

    /// Sends a dead letter back to the end of its lane as a fresh command (attempts
    /// reset); the handle awaits its new result.
    pub async fn redrive(&self, id: u64) -> Result<RedisCommandHandle> {
        self.ensure_listener();
        let handle = self.await_result(id);
        let outcome: String = SCRIPTS
            .redrive
            .key(&self.inner.prefix)
            .arg(id)
            .arg(&self.inner.client_id)
            .arg(handle.reference)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        match outcome.as_str() {
            "ok" => Ok(handle),
            "unknown_lane" => Err(LaneError::QueueError(format!(
                "dead letter {id} belongs to a lane that is no longer declared; declare it again first"
            ))),
            _ => Err(LaneError::QueueError(format!(
                "no dead letter with command id {id}"
            ))),
        }
    }

    /// Deletes every key of this queue (all its lanes, commands, results and dead
    /// letters). Meant for tests and for retiring a tenant; running workers of the queue
    /// lose their leases.
    pub async fn clear(&self) -> Result<usize> {
        let mut conn = self.conn();
        let pattern = format!("{}:*", escape_glob(&self.inner.prefix));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            // On a cluster: the node holding the queue's slot, every time (cursors are
            // per node).
            let (next, keys): (u64, Vec<String>) = conn
                .query_at(&self.inner.prefix, scan)
                .await
                .map_err(|e| redis_error(&e))?;
            if !keys.is_empty() {
                deleted += redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<usize>(&mut conn)
                    .await
                    .map_err(|e| redis_error(&e))?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

pub(super) fn lane_not_found(lane: &str, mut known: Vec<String>) -> LaneError {
    known.sort_unstable();
    LaneError::LaneNotFound {
        lane: lane.to_owned(),
        known: if known.is_empty() {
            "(none declared in Redis)".into()
        } else {
            known.join(", ")
        },
    }
}
