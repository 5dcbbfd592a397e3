//! The options JavaScript passes, as typed `#[napi(object)]` structs (which also write
//! `index.d.ts`), and their conversion into the core's configuration: [`lane`] (the one
//! lane model of both engines, with its retry policy), [`policy`] (rate limits and
//! priority boosts), [`queue`] (an in-process `Lane`) and [`redis`] (`RedisQueue` and
//! `RedisWorker`).
//!
//! Conversion only translates: field types and shapes are checked here (with
//! [`crate::convert`]), every rule about values is the core's (`LaneConfig::validate`,
//! `RetryPolicyBuilder::build`, `RedisQueueConfig::validate`, …) and its `ConfigError`
//! reaches JavaScript as a `RangeError` with code `CONFIG`. Defaults are the core's too:
//! an option left out is not set, so the core's default applies.

pub mod lane;
pub mod policy;
pub mod queue;
pub mod redis;
