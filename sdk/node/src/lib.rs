//! Node.js bindings of a3s-lane: the npm package `@a3s-lab/lane`.
//!
//! A thin wrapper over the `a3s-lane` facade that runs JavaScript handlers. Each class
//! holds the core object, converts arguments and maps errors:
//!
//! - [`lane::Lane`]: the in-process queue; [`metrics`] reads its metrics.
//! - [`redis`]: `RedisQueue` and `RedisWorker`, the Redis engine.
//! - [`budget`]: `SharedBudget`, a budget shared by lanes of several queues.
//! - [`client`]: the client surface both queues share (cancel, command, stats, pause
//!   and resume, dead letters, recurring schedules, events), written once over the
//!   core's `QueueClient`; [`stats`] and [`schedule`]: what it reports.
//! - [`config`]: the typed option structs and their conversion into the core's
//!   configuration (the core checks every value); [`convert`]: JavaScript values to Rust
//!   values; [`defaults`]: `DEFAULTS`, the core's table of every option's default.
//! - [`dashboard`]: `serveDashboard()` and `Dashboard`, the web dashboard served for a
//!   queue.
//! - [`error`]: errors to JavaScript errors with stable codes; [`events`]: lifecycle
//!   events; [`handle`]: the shapes of handles and handler contexts.
//! - [`runtime`]: the bridge between tokio tasks and the JavaScript thread (with its
//!   JavaScript half, `runtime.js`); [`spawner`]: command runners polled on the
//!   JavaScript thread when dispatched there.
//!
//! The generated `index.d.ts` documents the JavaScript API; `test/` is its `node --test`
//! suite.

// napi-rs generates `unsafe` glue for every exported item, and reading option objects
// field by field (`convert`) calls Node-API directly, so this crate cannot forbid it.
#![allow(unsafe_code)]

/// The allocator of everything Rust allocates in the addon (core included).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod budget;
pub mod client;
pub mod config;
pub mod convert;
pub mod dashboard;
pub mod defaults;
pub mod error;
pub mod events;
pub mod handle;
pub mod lane;
pub mod metrics;
pub mod redis;
pub mod runtime;
pub mod schedule;
pub mod spawner;
pub mod stats;
