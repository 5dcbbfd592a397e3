//! Every option's default, by the name the option has in Rust, Python and Node, in one
//! table. The SDKs expose this table as it is (`a3s_lane.DEFAULTS`, `DEFAULTS` in Node),
//! `docs/PARITY.md` lists it, and tests on each side check that what the SDK's option
//! objects really default to matches it.

use serde_json::{Value, json};

/// The defaults of every option, grouped by what they configure: `lane` ([`LaneConfig`]
/// and the retry, rate-limit and boost policies), `queue` (an in-process queue),
/// `redis_queue` and `redis_worker`. Durations are in milliseconds (keys end in `_ms`);
/// `null` means "none" (no timeout, no limit).
///
/// ```
/// let defaults = a3s_lane::defaults();
/// assert_eq!(defaults["lane"]["cancel_grace_ms"], 1000);
/// assert_eq!(defaults["lane"]["timeout_ms"], serde_json::Value::Null);
/// ```
///
/// [`LaneConfig`]: crate::LaneConfig
pub fn defaults() -> Value {
    let lane = crate::LaneConfig::default();
    let retry = crate::RetryPolicy::builder()
        .build()
        .expect("the builder's starting values are valid");
    #[allow(unused_mut)]
    let mut table = json!({
        "lane": {
            "min_concurrency": lane.min_concurrency,
            "max_concurrency": lane.max_concurrency,
            "timeout_ms": lane.timeout.map(millis),
            "pressure_threshold": lane.pressure_threshold,
            "cancel_grace_ms": millis(lane.cancel_grace),
            "retry_policy": Value::Null,
            "rate_limit": Value::Null,
            "priority_boost": Value::Null,
            "max_waiting": lane.max_waiting,
            "when_full": match lane.when_full {
                crate::WhenFull::Reject => "reject",
                crate::WhenFull::Wait { .. } => "wait",
            },
            "keep_last": lane.retention.keep_last(),
            "keep_for_ms": millis(lane.retention.keep_for()),
            "group_max_concurrency": lane.group_rules().default.max_concurrency,
            "group_rate_limit": Value::Null,
            "budget": lane.budget().map(|b| b.name().to_owned()),
        },
        "retry_policy": {
            "max_retries": retry.max_retries(),
            "initial_delay_ms": millis(retry.initial_delay()),
            "multiplier": retry.multiplier(),
            "max_delay_ms": millis(retry.max_delay()),
            "jitter": retry.jitter().name(),
        },
        "queue": {
            "event_capacity": crate::DEFAULT_EVENT_CAPACITY,
            "max_concurrency": Value::Null,
            "default_lanes": crate::DEFAULT_LANES
                .iter()
                .map(|(id, priority, max)| json!({"id": id, "priority": priority, "max_concurrency": max, "min_concurrency": 1}))
                .collect::<Vec<_>>(),
        },
    });
    #[cfg(feature = "redis")]
    {
        use crate::{RedisQueueConfig, RedisWorkerConfig};
        let worker = RedisWorkerConfig::default();
        table["redis_queue"] = json!({
            "key_prefix": RedisQueueConfig::DEFAULT_KEY_PREFIX,
            "result_ttl_ms": millis(RedisQueueConfig::DEFAULT_RESULT_TTL),
            "response_timeout_ms": millis(RedisQueueConfig::DEFAULT_RESPONSE_TIMEOUT),
            "connect_timeout_ms": millis(RedisQueueConfig::DEFAULT_CONNECT_TIMEOUT),
            "reconnect_wait_ms": millis(RedisQueueConfig::DEFAULT_RECONNECT_WAIT),
            "reconnect_min_delay_ms": millis(RedisQueueConfig::DEFAULT_RECONNECT_MIN_DELAY),
            "reconnect_max_delay_ms": millis(RedisQueueConfig::DEFAULT_RECONNECT_MAX_DELAY),
            "event_capacity": crate::DEFAULT_EVENT_CAPACITY,
            // The queue's event stream: on unless a config turned it off (`with_events`).
            "events": true,
        });
        table["redis_worker"] = json!({
            "slots": worker.slots(),
            "lease_ttl_ms": millis(worker.lease_ttl()),
            "heartbeat_interval_ms": millis(worker.heartbeat_interval()),
            "block_timeout_ms": millis(worker.block_timeout()),
        });
    }
    table
}

fn millis(d: std::time::Duration) -> u128 {
    d.as_millis()
}
