//! The Redis engine: [`queue::RedisQueue`] submits commands to a queue kept in Redis and
//! awaits their results; [`worker::RedisWorker`] runs them with JavaScript handlers, in
//! this process or any other; [`stats`] is what a queue's `stats()` reports. Both classes wrap the
//! core's `RedisQueue` / `RedisWorker`; handlers run through the same bridge as a
//! `Lane`'s (`runtime.rs`), and their options are converted in `config/redis.rs`.

pub mod queue;
pub mod stats;
pub mod worker;
