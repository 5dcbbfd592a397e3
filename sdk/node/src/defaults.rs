//! `DEFAULTS`: every option's default as the core defines it (`a3s_lane::defaults()`),
//! frozen, with the core's keys. The binding applies no default of its own: an option
//! left out is not set, so the core's applies (`option_defaults_match_the_core_table`
//! checks that what the option objects really default to matches this table).

use napi::bindgen_prelude::ToNapiValue;
use napi::{ValueType, sys};
use napi_derive::napi;
use serde_json::Value;

use crate::convert::Given;

/// Every option's default, from the Rust core (`a3s_lane::defaults()`), by what it
/// configures: `lane` (`LaneOptions`), `retry_policy` (`RetryOptions`), `queue` (`Lane`'s
/// options, and the six default lanes), `redis_queue` and `redis_worker`. Durations are
/// in milliseconds (keys ending in `_ms`); `null` means none. The keys are the core's,
/// the same in Rust, Python and Node. Frozen.
#[napi]
pub const DEFAULTS: Defaults = Defaults;

/// The value of [`DEFAULTS`], made from the core's table when the module loads.
#[derive(Debug, Clone, Copy)]
pub struct Defaults;

impl ToNapiValue for Defaults {
    unsafe fn to_napi_value(env: sys::napi_env, _: Self) -> napi::Result<sys::napi_value> {
        let raw = unsafe { Value::to_napi_value(env, a3s_lane::defaults()) }?;
        // SAFETY: `raw` was just made in this call.
        freeze(unsafe { Given::from_raw(env, raw) })?;
        Ok(raw)
    }
}

/// Freezes `value` and every object and array in it.
fn freeze(value: Given) -> napi::Result<()> {
    if value.kind()? != ValueType::Object {
        return Ok(());
    }
    if value.is_array()? {
        value.items()?.into_iter().try_for_each(freeze)?;
    } else {
        for key in value.keys()? {
            freeze(value.get(&key)?)?;
        }
    }
    let (env, raw) = value.raw();
    napi::check_status!(unsafe { sys::napi_object_freeze(env, raw) })
}

/// The type of `DEFAULTS` (`index.d.ts` only; its value is the core's table).
#[napi(
    object,
    object_to_js = false,
    object_from_js = false,
    js_name = "Defaults"
)]
#[derive(Debug, Clone)]
pub struct DefaultsTable {
    /// `LaneOptions`.
    #[napi(
        readonly,
        ts_type = "{ readonly min_concurrency: number; readonly max_concurrency: number; readonly timeout_ms: number | null; readonly pressure_threshold: number | null; readonly cancel_grace_ms: number; readonly retry_policy: null; readonly rate_limit: null; readonly priority_boost: null; readonly max_waiting: number | null; readonly when_full: 'reject' | 'wait'; readonly keep_last: number; readonly keep_for_ms: number }"
    )]
    pub lane: Value,
    /// `RetryOptions`.
    #[napi(
        readonly,
        js_name = "retry_policy",
        ts_type = "{ readonly max_retries: number; readonly initial_delay_ms: number; readonly multiplier: number; readonly max_delay_ms: number; readonly jitter: 'none' | 'full' | 'equal' }"
    )]
    pub retry_policy: Value,
    /// `new Lane(lanes, options)`, and the six default lanes used when `lanes` is left out.
    #[napi(
        readonly,
        ts_type = "{ readonly event_capacity: number; readonly max_concurrency: number | null; readonly default_lanes: ReadonlyArray<{ readonly id: string; readonly priority: number; readonly max_concurrency: number; readonly min_concurrency: number }> }"
    )]
    pub queue: Value,
    /// `RedisQueue.connect(url, options)`; `event_capacity` is the buffer of `events()`.
    #[napi(
        readonly,
        js_name = "redis_queue",
        ts_type = "{ readonly key_prefix: string; readonly result_ttl_ms: number; readonly response_timeout_ms: number; readonly connect_timeout_ms: number; readonly event_capacity: number }"
    )]
    pub redis_queue: Value,
    /// `RedisWorker.start(queue, options)`.
    #[napi(
        readonly,
        js_name = "redis_worker",
        ts_type = "{ readonly slots: number; readonly lease_ttl_ms: number; readonly heartbeat_interval_ms: number; readonly block_timeout_ms: number }"
    )]
    pub redis_worker: Value,
}
