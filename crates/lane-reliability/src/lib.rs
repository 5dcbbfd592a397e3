//! The reliability layer of a3s-lane: durable local storage with crash recovery.
//! Re-exported by the `a3s-lane` facade (feature `sqlite`, on by default); depend on it
//! directly only to use it with `lane-core` alone.
//!
//! - [`RetryPolicy`] lives in `lane-core` beside its trait, so every engine understands
//!   it; [`retry`] re-exports it here for code that named `lane_reliability::retry`.
//! - `LocalStorage` (feature `sqlite`, on by default) is the embedded [`Storage`](lane_core::Storage): SQLite in WAL mode
//!   with group commit. Given to `QueueManagerBuilder::with_storage`, it makes every
//!   replayable command durable before `submit_replayable` returns; on the next start the
//!   unfinished ones go back to the front of their lanes, in order, with their attempt
//!   counts, and the dead letters, finished commands' records and recurring schedules are
//!   reloaded (an instant's command is stored with its schedule moved past the instant, so
//!   a crash never fires an instant twice). Delivery is at least once.
//! - Dead letters (`DeadLetterQueue`, `QueueManagerBuilder::with_dlq`,
//!   `QueueManager::redrive`) live in `lane-core`, which fills them; with storage they are
//!   kept in the same database.
//!
//! In-process commands (`Box<dyn Command>`, closures) have no payload to replay and are
//! never stored: after a crash they are gone. Only replayable commands (a type name plus
//! a JSON payload, run by a registered handler) are durable.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

#[cfg(feature = "sqlite")]
pub mod local_storage;

/// The retry policies, which live in `lane-core` (re-exported for code that named this path).
pub mod retry {
    pub use lane_core::{RetryJitter, RetryPolicy, RetryPolicyBuilder};
}

#[cfg(feature = "sqlite")]
pub use local_storage::{
    LOCAL_STORAGE_FILE, LocalStorage, LocalStorageConfig, LocalStorageSnapshot, LocalSyncMode,
    SalvageReport, UnreadableRows,
};
pub use retry::{RetryJitter, RetryPolicy, RetryPolicyBuilder};
