//! Groups inside a lane: pausing, resuming and cancelling a group, and reading their
//! counts (the scripts' side is in the prelude's groups and group.lua).

use lane_core::{GroupStatus, LaneError, Page, Result};
use redis::Value;

use super::RedisQueue;
use crate::scripts::{RunScript, SCRIPTS};
use crate::wire::{self, redis_error};

/// The fields group.lua returns per group.
const GROUP_FIELDS: usize = 6;

impl RedisQueue {
    /// Stops claims of group `group`'s commands in `lane` on every worker (running ones go
    /// on, other groups take its turns) until [`RedisQueue::resume_group`]. A group may be
    /// paused before it has commands: later submits to it wait.
    pub async fn pause_group(&self, lane: &str, group: &str) -> Result<()> {
        lane_core::check_group(group)?;
        self.group_call(lane, &["pause", lane, group]).await?;
        Ok(())
    }

    /// Lets a paused group's commands start again.
    pub async fn resume_group(&self, lane: &str, group: &str) -> Result<()> {
        lane_core::check_group(group)?;
        self.group_call(lane, &["resume", lane, group]).await?;
        Ok(())
    }

    /// Cancels every command of group `group` in `lane`: pending and delayed ones end
    /// now as cancelled, running ones are signalled (as [`RedisQueue::cancel`] does).
    /// Returns how many commands the cancel reached.
    pub async fn cancel_group(&self, lane: &str, group: &str) -> Result<usize> {
        lane_core::check_group(group)?;
        let reason = wire::encode_error(&LaneError::Cancelled("group cancelled".into()));
        let ttl = self.inner.result_ttl_ms.to_string();
        let reply = self
            .group_call(lane, &["cancel", lane, group, &ttl, &reason])
            .await?;
        Ok(reply.first().map_or(0, |value| number(value) as usize))
    }

    /// A group's counts: zeros for a group with nothing waiting or running, its cap as
    /// the lane's group limits say.
    pub async fn group_status(&self, lane: &str, group: &str) -> Result<GroupStatus> {
        lane_core::check_group(group)?;
        let reply = self.group_call(lane, &["status", lane, group]).await?;
        parse_groups(lane, &reply)?
            .pop()
            .ok_or_else(|| LaneError::Storage("group.lua returned no group".into()))
    }

    /// The lane's groups with commands waiting or running, or paused, sorted by key and
    /// paged (commands of no group are not listed).
    pub async fn groups(&self, lane: &str, page: Page) -> Result<Vec<GroupStatus>> {
        page.validate()?;
        let offset = page.offset.to_string();
        let limit = page.limit.to_string();
        let reply = self
            .group_call(lane, &["list", lane, &offset, &limit])
            .await?;
        parse_groups(lane, &reply)
    }

    /// Runs group.lua; returns what follows its 'ok', or the lane's LaneNotFound.
    async fn group_call(&self, lane: &str, args: &[&str]) -> Result<Vec<Value>> {
        let mut invocation = SCRIPTS.group.key(&self.inner.prefix);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut reply: Vec<Value> = invocation
            .run(&mut self.conn())
            .await
            .map_err(|e| redis_error(&e))?;
        match reply.first().map(text).as_deref() {
            Some("ok") => Ok(reply.split_off(1)),
            Some("unknown") => Err(self.lane_not_found(lane).await),
            other => Err(LaneError::Storage(format!(
                "group.lua returned an unexpected reply {other:?}"
            ))),
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

fn number(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => text(other).parse().unwrap_or(0),
    }
}

fn parse_groups(lane: &str, fields: &[Value]) -> Result<Vec<GroupStatus>> {
    if !fields.len().is_multiple_of(GROUP_FIELDS) {
        return Err(LaneError::Storage(format!(
            "group.lua returned {} fields, not a multiple of {GROUP_FIELDS}",
            fields.len()
        )));
    }
    Ok(fields
        .chunks(GROUP_FIELDS)
        .map(|f| {
            let max = number(&f[5]);
            GroupStatus {
                lane: lane.to_owned(),
                group: text(&f[0]),
                pending: number(&f[1]).max(0) as usize,
                active: number(&f[2]).max(0) as usize,
                paused: number(&f[3]) == 1,
                throttled: number(&f[4]) == 1,
                max_concurrency: usize::try_from(max).ok(),
            }
        })
        .collect())
}
