//! The Redis engine behind the one client surface ([`QueueClient`]).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use lane_core::{
    CancelOutcome, CommandId, CommandState, CommandStatus, DeadLetter, EventStream, Page,
    QueueClient, QueueStats, Result, Schedule, ScheduleInfo, SubmitOptions, SubmittedCommand,
};
use serde_json::Value;

use crate::queue::RedisQueue;
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::redis_error;

#[async_trait]
impl QueueClient for RedisQueue {
    async fn submit_with(
        &self,
        lane: &str,
        command_type: &str,
        payload: Value,
        options: SubmitOptions,
    ) -> Result<SubmittedCommand> {
        let handle = RedisQueue::submit_with(self, lane, command_type, payload, options).await?;
        let duplicate = handle.is_duplicate();
        let submitted = SubmittedCommand::new(handle.id(), handle);
        Ok(if duplicate {
            submitted.into_duplicate()
        } else {
            submitted
        })
    }

    async fn cancel(&self, id: CommandId) -> Result<CancelOutcome> {
        RedisQueue::cancel(self, id).await
    }

    async fn command(&self, id: CommandId) -> Result<Option<CommandStatus>> {
        self.command_status(id).await
    }

    async fn list_commands(
        &self,
        lane: &str,
        state: CommandState,
        page: Page,
    ) -> Result<Vec<CommandStatus>> {
        RedisQueue::list_commands(self, lane, state, page).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        Ok(RedisQueue::stats(self).await?.queue)
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<ScheduleInfo> {
        RedisQueue::put_schedule(self, schedule).await
    }

    async fn remove_schedule(&self, name: &str) -> Result<bool> {
        RedisQueue::remove_schedule(self, name).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        RedisQueue::schedules(self).await
    }

    async fn pause_schedule(&self, name: &str) -> Result<()> {
        RedisQueue::pause_schedule(self, name).await
    }

    async fn resume_schedule(&self, name: &str) -> Result<()> {
        RedisQueue::resume_schedule(self, name).await
    }

    async fn wait_waiting_below(&self, limit: usize, lane: Option<&str>) -> Result<()> {
        RedisQueue::wait_waiting_below(self, limit, lane).await
    }

    async fn pause_lane(&self, lane: &str) -> Result<()> {
        RedisQueue::pause_lane(self, lane).await
    }

    async fn pause_lane_for(&self, lane: &str, duration: Duration) -> Result<()> {
        RedisQueue::pause_lane_for(self, lane, duration).await
    }

    async fn resume_lane(&self, lane: &str) -> Result<()> {
        RedisQueue::resume_lane(self, lane).await
    }

    async fn pause_group(&self, lane: &str, group: &str) -> Result<()> {
        RedisQueue::pause_group(self, lane, group).await
    }

    async fn resume_group(&self, lane: &str, group: &str) -> Result<()> {
        RedisQueue::resume_group(self, lane, group).await
    }

    async fn cancel_group(&self, lane: &str, group: &str) -> Result<usize> {
        RedisQueue::cancel_group(self, lane, group).await
    }

    async fn group_status(&self, lane: &str, group: &str) -> Result<lane_core::GroupStatus> {
        RedisQueue::group_status(self, lane, group).await
    }

    async fn groups(&self, lane: &str, page: Page) -> Result<Vec<lane_core::GroupStatus>> {
        RedisQueue::groups(self, lane, page).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        RedisQueue::dead_letters(self, limit).await
    }

    async fn redrive(&self, id: CommandId) -> Result<SubmittedCommand> {
        let handle = RedisQueue::redrive(self, id).await?;
        Ok(SubmittedCommand::new(handle.id(), handle))
    }

    async fn purge_dead_letters(&self) -> Result<usize> {
        RedisQueue::purge_dead_letters(self).await
    }

    async fn delete_dead_letter(&self, id: CommandId) -> Result<bool> {
        RedisQueue::delete_dead_letter(self, id).await
    }

    fn subscribe(&self) -> EventStream {
        RedisQueue::subscribe(self)
    }
}

impl RedisQueue {
    /// Deletes every dead letter; returns how many there were.
    pub async fn purge_dead_letters(&self) -> Result<usize> {
        SCRIPTS
            .purge
            .key(self.key_prefix())
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))
    }

    /// How many dead letters the queue holds: in all, and per declared lane (a lane with
    /// none counts 0). Counted in Redis, one round trip, without reading any letter.
    pub async fn dead_letter_counts(&self) -> Result<(usize, HashMap<String, usize>)> {
        let prefix = self.key_prefix();
        let mut conn = self.conn();
        let lanes: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("{prefix}:lanes"))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(&e))?;
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(format!("{prefix}:dead"));
        for lane in &lanes {
            pipe.cmd("ZCARD").arg(format!("{prefix}:dead:{lane}"));
        }
        let counts: Vec<usize> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(&e))?;
        let total = counts.first().copied().unwrap_or(0);
        Ok((
            total,
            lanes.into_iter().zip(counts.into_iter().skip(1)).collect(),
        ))
    }

    /// Deletes the dead letter of command `id` without running it again; false when it
    /// has none.
    pub async fn delete_dead_letter(&self, id: CommandId) -> Result<bool> {
        let deleted: usize = SCRIPTS
            .purge
            .key(self.key_prefix())
            .arg(id)
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        Ok(deleted > 0)
    }
}
