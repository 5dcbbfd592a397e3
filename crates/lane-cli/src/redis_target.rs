//! A queue in Redis: every subcommand through the one client surface
//! ([`QueueClient`]), plus the Redis engine's own reads where it knows more (payloads,
//! workers). Connecting needs no lane list: the queue's lanes are the ones its clients
//! declared, which Redis records (`{prefix}:lanes`).

use std::time::Duration;

use lane_core::{CancelOutcome, CommandState, Page, QueueClient};
use lane_redis::{RedisQueue, RedisQueueConfig};

use crate::output::{
    CancelView, CommandsView, DeadLettersView, LaneView, PauseView, PurgeView, RedriveView,
    ShowView, StatsView,
};
use crate::{CliResult, Failure};

/// A connected Redis queue.
#[derive(Debug)]
pub(crate) struct RedisTarget {
    pub(crate) queue: RedisQueue,
    /// The URL(s) and prefix as they may be shown (no password).
    pub(crate) shown: String,
}

/// A Redis URL without its password.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or(credentials, |(u, _)| u);
            let hidden = if credentials.contains(':') {
                ":***"
            } else {
                ""
            };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

impl RedisTarget {
    /// Connects to the queue under `prefix` on one server (or a cluster through
    /// `nodes`), and checks that it has lanes: a prefix no queue uses is an error.
    pub(crate) async fn connect(
        nodes: Vec<String>,
        cluster: bool,
        prefix: &str,
        connect_timeout: Duration,
    ) -> CliResult<Self> {
        let urls = nodes
            .iter()
            .map(|n| redact(n))
            .collect::<Vec<_>>()
            .join(",");
        let shown = format!("{urls} prefix {prefix}");
        let config = if cluster {
            RedisQueueConfig::cluster(nodes)
        } else {
            RedisQueueConfig::new(nodes.into_iter().next().unwrap_or_default())
        }
        .with_key_prefix(prefix)
        .with_connect_timeout(connect_timeout);
        let queue = RedisQueue::connect(config)
            .await
            .map_err(|e| Failure(format!("cannot connect to Redis at {urls}: {e}")))?;
        let target = Self { queue, shown };
        let stats = target.queue.stats().await.map_err(|e| target.failed(e))?;
        if stats.queue.lanes.is_empty() {
            return Err(Failure(format!(
                "no queue under prefix '{prefix}' at {urls}: no lane is recorded there \
                 ({{{prefix}}}:lanes is empty). Check --prefix: it is the queue's \
                 RedisQueueConfig::with_key_prefix (a3s-lane unless set)"
            )));
        }
        Ok(target)
    }

    fn failed(&self, error: impl std::fmt::Display) -> Failure {
        Failure(format!("{error} (queue {})", self.shown))
    }

    /// `stats` (and `lanes`).
    pub(crate) async fn stats(&self) -> CliResult<StatsView> {
        let stats = self.queue.stats().await.map_err(|e| self.failed(e))?;
        let (dead_letters, dead_per_lane) = self
            .queue
            .dead_letter_counts()
            .await
            .map_err(|e| self.failed(e))?;
        let mut lanes: Vec<LaneView> = stats
            .queue
            .lanes
            .values()
            .map(|l| LaneView {
                id: l.id.clone(),
                priority: Some(l.priority),
                effective_priority: Some(l.effective_priority),
                pending: l.pending,
                delayed: l.delayed,
                running: Some(l.active),
                max_concurrency: Some(l.max),
                max_waiting: l.max_waiting,
                paused: Some(l.paused),
                throttled: Some(l.throttled),
                dead_letters: Some(dead_per_lane.get(&l.id).copied().unwrap_or(0)),
            })
            .collect();
        lanes.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        Ok(StatsView {
            engine: "redis",
            target: self.shown.clone(),
            total_pending: stats.queue.total_pending,
            total_delayed: stats.queue.total_delayed,
            total_running: Some(stats.queue.total_active),
            dead_letters: Some(dead_letters),
            workers: Some(stats.workers),
            idle_workers: Some(stats.idle_workers),
            lanes,
        })
    }

    async fn lane_ids(&self) -> CliResult<Vec<String>> {
        let stats = self.queue.stats().await.map_err(|e| self.failed(e))?;
        let mut lanes: Vec<String> = stats.queue.lanes.into_keys().collect();
        lanes.sort();
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
        let lanes = match lane {
            Some(lane) => vec![lane.to_owned()],
            None => self.lane_ids().await?,
        };
        crate::storage_target::page_over_lanes(state, lanes, limit, after, async |lane, page| {
            QueueClient::list_commands(&self.queue, lane, state, page)
                .await
                .map_err(|e| self.failed(e))
        })
        .await
    }

    /// `show`.
    pub(crate) async fn show(&self, id: u64) -> CliResult<ShowView> {
        let status = QueueClient::command(&self.queue, id)
            .await
            .map_err(|e| self.failed(e))?
            .ok_or_else(|| {
                self.failed(format!(
                    "no command {id}: none was submitted with that id, or its record expired"
                ))
            })?;
        let payload = self
            .queue
            .command(id)
            .await
            .map_err(|e| self.failed(e))?
            .map(|c| c.payload);
        Ok(ShowView { status, payload })
    }

    /// `dead-letters list`.
    pub(crate) async fn dead_letters(&self, limit: usize) -> CliResult<DeadLettersView> {
        Ok(DeadLettersView {
            dead_letters: QueueClient::dead_letters(&self.queue, limit)
                .await
                .map_err(|e| self.failed(e))?,
        })
    }

    /// `dead-letters redrive`: one, or every dead letter there is when it starts (one
    /// that fails again meanwhile is not sent back a second time).
    pub(crate) async fn redrive(&self, id: Option<u64>) -> CliResult<RedriveView> {
        if let Some(id) = id {
            let _handle = QueueClient::redrive(&self.queue, id)
                .await
                .map_err(|e| self.failed(e))?;
            return Ok(RedriveView { redriven: vec![id] });
        }
        let mut redriven = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let batch = QueueClient::dead_letters(&self.queue, Page::MAX_LIMIT)
                .await
                .map_err(|e| self.failed(e))?;
            let fresh: Vec<u64> = batch
                .iter()
                .map(|d| d.command_id)
                .filter(|id| seen.insert(*id))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for id in fresh {
                match QueueClient::redrive(&self.queue, id).await {
                    Ok(_handle) => redriven.push(id),
                    // Purged or redriven by someone else meanwhile.
                    Err(lane_core::LaneError::QueueError(m)) if m.contains("no dead letter") => {}
                    Err(e) => return Err(self.failed(e)),
                }
            }
        }
        Ok(RedriveView { redriven })
    }

    /// `dead-letters purge`.
    pub(crate) async fn purge(&self, id: Option<u64>) -> CliResult<PurgeView> {
        let purged = match id {
            None => QueueClient::purge_dead_letters(&self.queue)
                .await
                .map_err(|e| self.failed(e))?,
            Some(id) => {
                if !QueueClient::delete_dead_letter(&self.queue, id)
                    .await
                    .map_err(|e| self.failed(e))?
                {
                    return Err(self.failed(format!("no dead letter with command id {id}")));
                }
                1
            }
        };
        Ok(PurgeView { purged })
    }

    /// `cancel`.
    pub(crate) async fn cancel(&self, id: u64) -> CliResult<CancelView> {
        let outcome = QueueClient::cancel(&self.queue, id)
            .await
            .map_err(|e| self.failed(e))?;
        if outcome == CancelOutcome::Unknown {
            return Err(self.failed(format!(
                "no command {id}: none was submitted with that id, or its record expired"
            )));
        }
        Ok(CancelView { id, outcome })
    }

    /// `pause`.
    pub(crate) async fn pause(
        &self,
        lane: &str,
        duration: Option<Duration>,
    ) -> CliResult<PauseView> {
        match duration {
            Some(duration) => QueueClient::pause_lane_for(&self.queue, lane, duration).await,
            None => QueueClient::pause_lane(&self.queue, lane).await,
        }
        .map_err(|e| self.failed(e))?;
        Ok(PauseView {
            lane: lane.to_owned(),
            paused: true,
            for_ms: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
    }

    /// `resume`.
    pub(crate) async fn resume(&self, lane: &str) -> CliResult<PauseView> {
        QueueClient::resume_lane(&self.queue, lane)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(PauseView {
            lane: lane.to_owned(),
            paused: false,
            for_ms: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact("redis://user:secret@host:6379/2"),
            "redis://user:***@host:6379/2"
        );
        assert_eq!(redact("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
