//! One lane's options — the one lane model, the same for an in-process `Lane` and a
//! `RedisQueue` — and its retry policy, turned into the core's [`LaneConfig`] and
//! [`RetryPolicy`].

use a3s_lane::{
    DEFAULT_LANES, GroupLimits, LaneConfig, Retention, RetryJitter, RetryPolicy, WhenFull,
};
use napi_derive::napi;

use crate::budget::BudgetRef;
use crate::config::policy::{PriorityBoostOptions, RateLimitOptions};
use crate::convert::{At, FromJs, Given, Js, Read, options_object};
use crate::error::{JsFailure, ToJsError};

/// Options of one lane (`new Lane({ api: { priority: 2, maxConcurrency: 10 } })`), the
/// same for a `Lane` and a `RedisQueue`.
///
/// The six default lanes (`system` 0/5, `control` 1/3, `query` 2/10, `session` 3/5,
/// `skill` 4/3, `prompt` 5/2 as priority/maxConcurrency) default to those values; other
/// lanes must give `priority`. The other defaults are the core's (`DEFAULTS.lane`).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct LaneOptions {
    /// 0 (most urgent) to 255; lower numbers run first.
    #[napi(ts_type = "number")]
    pub priority: Option<Js<f64>>,
    /// Slots reserved for this lane under a global `maxConcurrency` (default 1).
    #[napi(ts_type = "number")]
    pub min_concurrency: Option<Js<f64>>,
    /// At most this many of the lane's commands run at once, at least 1 (default 1; over
    /// all workers of a `RedisQueue`).
    #[napi(ts_type = "number")]
    pub max_concurrency: Option<Js<f64>>,
    /// A run that takes longer fails with code `TIMEOUT` (and its `ctx.signal` aborts).
    /// No timeout when absent.
    #[napi(ts_type = "number")]
    pub timeout_ms: Option<Js<f64>>,
    /// How failed commands are retried (on a `RedisQueue`, the retry waits in Redis and
    /// may run on any worker). No retries when absent.
    #[napi(ts_type = "RetryOptions")]
    pub retry: Option<Js<RetryOptions>>,
    /// Emit `queue.lane.pressure` when this many commands are pending, and
    /// `queue.lane.idle` when the lane empties again (a `Lane` only).
    #[napi(ts_type = "number")]
    pub pressure_threshold: Option<Js<f64>>,
    /// After a cancel, a running handler has this long to settle by itself (its
    /// `ctx.signal` is aborted at once) before it is abandoned. Default 1000.
    #[napi(ts_type = "number")]
    pub cancel_grace_ms: Option<Js<f64>>,
    /// How fast the lane may start commands (over all workers of a `RedisQueue`). No
    /// limit when absent.
    #[napi(ts_type = "RateLimitOptions")]
    pub rate_limit: Option<Js<RateLimitOptions>>,
    /// Raises the lane's priority as its oldest pending command waits. The boosted
    /// priority shows in `stats().lanes[id].effectivePriority`.
    #[napi(ts_type = "PriorityBoostOptions")]
    pub priority_boost: Option<Js<PriorityBoostOptions>>,
    /// At most this many commands wait in the lane (pending and delayed), at least 1
    /// (over all producers of a `RedisQueue`). No bound when absent.
    #[napi(ts_type = "number")]
    pub max_waiting: Option<Js<f64>>,
    /// What a submit to a full lane (see `maxWaiting`) does: `'reject'` (the default)
    /// rejects at once with code `LANE_FULL` (`LaneFullError`); `'wait'` waits for room.
    #[napi(ts_type = "'reject' | 'wait'")]
    pub when_full: Option<Js<String>>,
    /// With `whenFull: 'wait'` only: a submit waits for room at most this long, then
    /// rejects with code `LANE_FULL`. Waits as long as it takes when absent.
    #[napi(ts_type = "number")]
    pub full_wait_timeout_ms: Option<Js<f64>>,
    /// How many finished commands of each final state (completed, failed, cancelled,
    /// expired) the lane keeps for `command(id)` and `listCommands`: the last this many,
    /// at most 1000000 (default 1000, `DEFAULTS.lane.keep_last`); 0 keeps nothing (a
    /// command is forgotten once it ended; its submitter still gets the result).
    #[napi(ts_type = "number")]
    pub keep_last: Option<Js<f64>>,
    /// How long a finished command is kept at most, from 1 ms to a year (default a day,
    /// `DEFAULTS.lane.keep_for_ms`).
    #[napi(ts_type = "number")]
    pub keep_for_ms: Option<Js<f64>>,
    /// At most this many commands of each group (`options.group` of a submit) run at
    /// once, at least 1 (over all workers of a `RedisQueue`); `groupOverrides` may give a
    /// group another cap. The lane's own `maxConcurrency` still holds. No group cap when
    /// absent.
    #[napi(ts_type = "number")]
    pub group_max_concurrency: Option<Js<f64>>,
    /// How fast the commands of each group may start: a token bucket, in the shapes of
    /// `rateLimit` (`{ perSecond: n }`, `{ perMinute: n }`, `{ perHour: n }` or
    /// `{ tokenBucket: { rate, periodMs, burst } }`; a sliding window is refused for
    /// groups). A group held back shows `throttled: true` in its `GroupStatus`, and other
    /// groups take its turns. No limit when absent.
    #[napi(ts_type = "GroupRateLimitOptions")]
    pub group_rate_limit: Option<Js<RateLimitOptions>>,
    /// Limits of particular groups, by group key, replacing `groupMaxConcurrency` and
    /// `groupRateLimit` for them (`{ 'tenant-big': { maxConcurrency: 8 } }`; what an
    /// override leaves out is not limited).
    #[napi(ts_type = "Record<string, GroupLimitsOptions>")]
    pub group_overrides: Option<Js<GroupOverrides>>,
    /// A `SharedBudget` this lane draws from on top of its own caps: one slot per running
    /// command, shared with every lane (of any `Lane` queue of this process) given the
    /// same budget. Not available on a `RedisQueue`. No budget when absent.
    #[napi(ts_type = "SharedBudget")]
    pub budget: Option<Js<BudgetRef>>,
}

options_object!(
    LaneOptions,
    "an object of lane options",
    [
        "priority",
        "minConcurrency",
        "maxConcurrency",
        "timeoutMs",
        "retry",
        "pressureThreshold",
        "cancelGraceMs",
        "rateLimit",
        "priorityBoost",
        "maxWaiting",
        "whenFull",
        "fullWaitTimeoutMs",
        "keepLast",
        "keepForMs",
        "groupMaxConcurrency",
        "groupRateLimit",
        "groupOverrides",
        "budget",
    ]
);

/// The limits of one group of a lane (an entry of `groupOverrides`): its cap and its
/// rate limit, replacing the lane's `groupMaxConcurrency` and `groupRateLimit` for it.
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct GroupLimitsOptions {
    /// At most this many of the group's commands run at once, at least 1. No cap when
    /// absent.
    #[napi(ts_type = "number")]
    pub max_concurrency: Option<Js<f64>>,
    /// How fast the group's commands may start (a token bucket, as `groupRateLimit`).
    /// No limit when absent.
    #[napi(ts_type = "GroupRateLimitOptions")]
    pub rate_limit: Option<Js<RateLimitOptions>>,
}

options_object!(
    GroupLimitsOptions,
    "an object like { maxConcurrency: 2, rateLimit: { perSecond: 5 } }",
    ["maxConcurrency", "rateLimit"]
);

/// Group limits by group key (`groupOverrides`), in the order given.
#[derive(Debug, Clone, Default)]
pub struct GroupOverrides(pub Vec<(String, Js<GroupLimitsOptions>)>);

impl FromJs for GroupOverrides {
    const EXPECTED: &'static str =
        "an object mapping group keys to group limits, like { 'tenant-1': { maxConcurrency: 2 } }";

    fn from_js(value: Given) -> Read<Self> {
        if !value.is_object()? {
            return value.unexpected();
        }
        Ok(Ok(Self(value.entries()?)))
    }
}

impl GroupLimitsOptions {
    /// The limits; the core checks them when the lane is declared (a cap of at least 1,
    /// a token bucket only).
    fn into_limits(self, at: &At<'_>) -> Result<GroupLimits, JsFailure> {
        let mut limits = GroupLimits::new();
        if let Some(max) = at.field("maxConcurrency", self.max_concurrency, At::count)? {
            limits = limits.with_max_concurrency(max);
        }
        if let Some(limit) = at.field("rateLimit", self.rate_limit, |at, limit| {
            limit.into_config(at)
        })? {
            limits = limits.with_rate_limit(limit);
        }
        Ok(limits)
    }
}

/// A lane's retry policy: after the n-th failure the command runs again after
/// `min(initialDelayMs * multiplier^(n-1), maxDelayMs)`, at the front of its lane, as
/// long as n <= `maxRetries`. A handler error with `retryable: false` is never retried.
/// Defaults are the core's (`DEFAULTS.retry_policy`).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct RetryOptions {
    /// How many retries after the first run (default 3; 0 for none).
    #[napi(ts_type = "number")]
    pub max_retries: Option<Js<f64>>,
    /// The delay before the first retry (default 100).
    #[napi(ts_type = "number")]
    pub initial_delay_ms: Option<Js<f64>>,
    /// The factor between one delay and the next, at least 1 (default 2; 1 for a fixed
    /// delay).
    #[napi(ts_type = "number")]
    pub multiplier: Option<Js<f64>>,
    /// The longest delay (default 30000).
    #[napi(ts_type = "number")]
    pub max_delay_ms: Option<Js<f64>>,
    /// `'none'` (default), `'full'` (random between 0 and the delay) or `'equal'` (half
    /// the delay plus a random part up to the other half).
    #[napi(ts_type = "'none' | 'full' | 'equal'")]
    pub jitter: Option<Js<String>>,
}

options_object!(
    RetryOptions,
    "an object like { maxRetries: 3 }",
    [
        "maxRetries",
        "initialDelayMs",
        "multiplier",
        "maxDelayMs",
        "jitter",
    ]
);

/// Lanes by id, in the order given (`{ api: { priority: 0 }, batch: { priority: 5 } }`).
#[derive(Debug, Clone, Default)]
pub struct LaneMap(pub Vec<(String, Js<LaneOptions>)>);

impl FromJs for LaneMap {
    const EXPECTED: &'static str = "an object mapping lane ids to lane options";

    fn from_js(value: Given) -> Read<Self> {
        if !value.is_object()? {
            return value.unexpected();
        }
        Ok(Ok(Self(value.entries()?)))
    }
}

/// One lane, as the core's builders take it.
#[derive(Debug, Clone)]
pub struct LaneSetup {
    /// The lane id.
    pub id: String,
    /// Its configuration.
    pub config: LaneConfig,
    /// Its priority.
    pub priority: u8,
}

impl LaneMap {
    /// The lanes, each converted (`at` names the map: `lanes`, `options.lanes`).
    pub fn into_lanes(self, at: &At<'_>) -> Result<Vec<LaneSetup>, JsFailure> {
        self.0
            .into_iter()
            .map(|(id, options)| {
                let at = at.key(&id);
                options.get(&at)?.into_lane(&id, &at)
            })
            .collect()
    }
}

impl LaneOptions {
    /// The lane `id` as the core takes it; `at` names these options.
    pub fn into_lane(self, id: &str, at: &At<'_>) -> Result<LaneSetup, JsFailure> {
        let default_lane = DEFAULT_LANES.iter().find(|(name, _, _)| *name == id);
        let priority = match at.field("priority", self.priority, At::u8)? {
            Some(priority) => priority,
            None => match default_lane {
                Some((_, priority, _)) => *priority,
                None => {
                    return Err(at
                        .key("priority")
                        .required("0 is the most urgent, 255 the least"));
                }
            },
        };
        let core = LaneConfig::default();
        let max = at
            .field("maxConcurrency", self.max_concurrency, At::count)?
            .or(default_lane.map(|(_, _, max)| *max))
            .unwrap_or(core.max_concurrency);
        let min = at
            .field("minConcurrency", self.min_concurrency, At::count)?
            .unwrap_or(core.min_concurrency);
        let mut config = LaneConfig::new(min, max);
        if let Some(timeout) = at.field("timeoutMs", self.timeout_ms, At::millis)? {
            config = config.with_timeout(timeout);
        }
        if let Some(grace) = at.field("cancelGraceMs", self.cancel_grace_ms, At::millis)? {
            config = config.with_cancel_grace(grace);
        }
        if let Some(threshold) =
            at.field("pressureThreshold", self.pressure_threshold, At::count)?
        {
            config = config.with_pressure_threshold(threshold);
        }
        if let Some(policy) = at.field("retry", self.retry, |at, retry| retry.into_policy(at))? {
            config = config.with_retry_policy(policy);
        }
        if let Some(limit) = at.field("rateLimit", self.rate_limit, |at, limit| {
            limit.into_config(at)
        })? {
            config = config.with_rate_limit(limit);
        }
        if let Some(boost) = at.field("priorityBoost", self.priority_boost, |at, boost| {
            boost.into_config(at)
        })? {
            config = config.with_priority_boost(boost);
        }
        if let Some(max) = at.field("maxWaiting", self.max_waiting, At::count)? {
            config = config.with_max_waiting(max);
        }
        let timeout = at.field("fullWaitTimeoutMs", self.full_wait_timeout_ms, At::millis)?;
        let when_full = at.field("whenFull", self.when_full, |at, name| match name.as_str() {
            "reject" => Ok(false),
            "wait" => Ok(true),
            _ => Err(at.range_error(format!(
                "{} must be 'reject' or 'wait', got {name:?}",
                at.path()
            ))),
        })?;
        match (when_full, timeout) {
            (Some(true), timeout) => config = config.with_when_full(WhenFull::Wait { timeout }),
            (_, None) => {}
            (_, Some(_)) => {
                return Err(at.key("fullWaitTimeoutMs").range_error(format!(
                    "{}.fullWaitTimeoutMs applies only with whenFull: 'wait' (a lane that \
                     rejects fails a submit at once); give whenFull: 'wait' or leave \
                     fullWaitTimeoutMs out",
                    at.path()
                )));
            }
        }
        let keep_last = at.field("keepLast", self.keep_last, At::count)?;
        let keep_for = at.field("keepForMs", self.keep_for_ms, At::millis)?;
        if keep_last.is_some() || keep_for.is_some() {
            // What is left out is the core's default; its rules (at most a million, 1 ms
            // to a year) are checked with the lane (`Retention::validate`).
            let core = Retention::default();
            config = config.with_retention(Retention::new(
                keep_last.unwrap_or(core.keep_last()),
                keep_for.unwrap_or(core.keep_for()),
            ));
        }
        let mut group_default = GroupLimits::new();
        if let Some(max) = at.field("groupMaxConcurrency", self.group_max_concurrency, At::count)? {
            group_default = group_default.with_max_concurrency(max);
        }
        if let Some(limit) = at.field("groupRateLimit", self.group_rate_limit, |at, limit| {
            limit.into_config(at)
        })? {
            group_default = group_default.with_rate_limit(limit);
        }
        if group_default != GroupLimits::new() {
            config = config.with_group_limits(group_default);
        }
        let overrides = at.field("groupOverrides", self.group_overrides, |_, map| Ok(map.0))?;
        let overrides_at = at.key("groupOverrides");
        for (group, limits) in overrides.into_iter().flatten() {
            let at = overrides_at.key(&group);
            let limits = limits.get(&at)?.into_limits(&at)?;
            config = config.with_group_override(group, limits);
        }
        if let Some(budget) = at.field("budget", self.budget, |_, budget| Ok(budget.0))? {
            config = config.with_budget(budget);
        }
        Ok(LaneSetup {
            id: id.to_owned(),
            config,
            priority,
        })
    }
}

impl RetryOptions {
    /// The policy, checked by the core (`RetryPolicyBuilder::build`).
    pub fn into_policy(self, at: &At<'_>) -> Result<RetryPolicy, JsFailure> {
        let mut builder = RetryPolicy::builder();
        if let Some(retries) = at.field("maxRetries", self.max_retries, At::u32)? {
            builder = builder.max_retries(retries);
        }
        if let Some(delay) = at.field("initialDelayMs", self.initial_delay_ms, At::millis)? {
            builder = builder.initial_delay(delay);
        }
        if let Some(multiplier) = at.field("multiplier", self.multiplier, |_, m| Ok(m))? {
            builder = builder.multiplier(multiplier);
        }
        if let Some(delay) = at.field("maxDelayMs", self.max_delay_ms, At::millis)? {
            builder = builder.max_delay(delay);
        }
        if let Some(jitter) = at.field("jitter", self.jitter, |at, name| {
            name.parse::<RetryJitter>()
                .map_err(|error| error.to_js_failure().within(at.path()))
        })? {
            builder = builder.jitter(jitter);
        }
        builder
            .build()
            .map_err(|error| error.to_js_failure().within(at.path()))
    }
}
