//! The Redis engine: `RedisQueue` (producers: submit, cancel, inspect, administer; its
//! lanes are `LaneConfig`s, as a `Lane`'s are) and `RedisWorker` (runs Python handlers
//! for a Redis queue, in this process or any other).
//!
//! A worker's handlers are the lane's handlers (`handler::PyHandler`), with the same
//! semantics: plain `def` on the thread pool, `async def` on the event loop running at
//! `start()` (or a private one). How a lane's commands run — timeout, cancel grace,
//! retry policy — is kept in Redis with the lane, so every worker runs them alike. What
//! crosses processes is JSON: a handler's exception reaches the submitter as a
//! `CommandError` carrying its type and message.
//!
//! `config` turns keyword arguments into the core's `RedisQueueConfig` and
//! `RedisWorkerConfig`, whose own checks decide what is allowed; `queue`, `worker` and
//! `stats` hold the classes.

pub(crate) mod config;
pub(crate) mod queue;
pub(crate) mod stats;
pub(crate) mod worker;
