//! The reliability layer of a3s-lane: retry policies and durable local storage with crash
//! recovery. Re-exported by the `a3s-lane` facade; depend on it directly only to use it
//! with `lane-core` alone.
//!
//! - [`RetryPolicy`] (`exponential`, `fixed`, `none`, jitter, a checked builder) plugs into
//!   a lane with `LaneConfig::with_retry_policy`. The queue runs the retries: a retried
//!   command waits on the queue's timer and then goes back to the front of its lane.
//! - [`LocalStorage`] is the embedded [`Storage`](lane_core::Storage): SQLite in WAL mode
//!   with group commit. Given to `QueueManagerBuilder::with_storage`, it makes every
//!   replayable command durable before `submit_replayable` returns; on the next start the
//!   unfinished ones go back to the front of their lanes, in order, with their attempt
//!   counts, and the dead letters are reloaded. Delivery is at least once.
//! - Dead letters (`DeadLetterQueue`, `QueueManagerBuilder::with_dlq`,
//!   `QueueManager::redrive`) live in `lane-core`, which fills them; with storage they are
//!   kept in the same database.
//!
//! In-process commands (`Box<dyn Command>`, closures) have no payload to replay and are
//! never stored: after a crash they are gone. Only replayable commands (a type name plus
//! a JSON payload, run by a registered handler) are durable.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod local_storage;
pub mod retry;

pub use local_storage::{LOCAL_STORAGE_FILE, LocalStorage, LocalStorageConfig, LocalSyncMode};
pub use retry::{RetryJitter, RetryPolicy, RetryPolicyBuilder};
