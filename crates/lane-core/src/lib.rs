//! The core of a3s-lane: named lanes with priorities and concurrency limits, and an
//! event-driven scheduler that always starts work from the most urgent lane that has
//! pending work and free capacity.
//!
//! Most users depend on the `a3s-lane` facade, which re-exports this crate together with
//! retry policies, storage, metrics, rate limiting and telemetry. Depend on `lane-core`
//! directly to implement an extension ([`Observer`], [`AdmissionPolicy`],
//! [`PriorityBoost`], [`RetryStrategy`], [`Storage`]) without pulling in the rest.
//!
//! Layout: [`command`] (what runs), [`config`] (how a lane runs it), the scheduler state
//! (private), [`queue`] (accepting, dispatching, running), [`manager`] (assembly and
//! lifecycle), [`event`] (what is published), and the extension traits in [`policy`],
//! [`observer`] and [`storage`].

#![forbid(unsafe_code)]

pub mod budget;
pub mod client;
pub mod command;
pub mod config;
mod contain;
pub mod dead_letter;
pub mod error;
pub mod event;
pub mod group;
pub mod handle;
mod journal;
pub mod manager;
pub mod observer;
pub mod payload;
pub mod policy;
pub mod queue;
pub mod retention;
pub mod runner;
pub mod schedule;
mod scheduler;
pub mod spawner;
pub mod stats;
pub mod storage;
pub mod timing;

pub use budget::{BudgetStatus, SharedBudget};
pub use client::{
    CancelOutcome, CommandState, CommandStatus, QueueClient, SubmittedCommand, check_waiting_limit,
};
pub use command::{
    CancelTrigger, Command, CommandContext, CommandId, FnCommand, FnHandler, Handler,
    HandlerRegistry, command_fn, handler_fn,
};
pub use config::{
    DEFAULT_CANCEL_GRACE, DEFAULT_LANES, LaneConfig, MAX_DURATION, MAX_EVENT_CAPACITY,
    MAX_TIMED_PAUSE, WhenFull, validate_timed_pause,
};
pub use dead_letter::{DeadLetter, DeadLetterQueue};
pub use error::{LaneError, Result};
pub use event::{
    DEFAULT_EVENT_CAPACITY, EventEmitter, EventStream, EventStreamClosed, LaneEvent,
    keys as event_keys,
};
pub use group::{GroupLimits, GroupRules, GroupStatus, MAX_GROUP_BYTES, check_group};
pub use handle::CommandHandle;
pub use manager::{QueueManager, QueueManagerBuilder};
pub use observer::{CommandInfo, IntoObserver, Observer, QueueProbe, RunOutcome};
pub use payload::{MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, check_payload};
pub use policy::{
    Admission, AdmissionPolicy, PriorityBoost, PriorityBoostConfig, RateLimitConfig, RetryJitter,
    RetryPolicy, RetryPolicyBuilder, RetryStrategy,
};
pub use queue::CommandQueue;
pub use retention::{CommandFailure, Page, Retention};
pub use runner::{AbandonedRun, RunEnd, RunLimits, supervise, supervise_keeping_slot};
pub use schedule::{
    Due, Every, MAX_JITTER, MAX_SCHEDULE_NAME_BYTES, MISSED_GRACE, Missed, Schedule, ScheduleInfo,
    check_schedule_name,
};
pub use spawner::{CommandRunner, Spawner};
pub use stats::{LaneStatus, QueueStats};
pub use storage::{Storage, StorageOp, StoredCommand, StoredDeadLetter, StoredFinished};
pub use timing::{MAX_KEY_BYTES, PAST_TOLERANCE, SubmitOptions, Timing};
