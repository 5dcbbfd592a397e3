//! Node.js bindings of a3s-lane: the npm package `@a3s-lab/lane`.
//!
//! A thin wrapper over the `a3s-lane` facade (features `metrics` and `distributed`) that
//! runs JavaScript handlers: [`lane::Lane`] holds the queue and converts arguments,
//! [`config`] and [`limits`] check options (rate limits, priority boosts), [`args`] checks
//! method arguments, [`metrics`] reads the queue's metrics, [`redis`] holds
//! `RedisQueue` and `RedisWorker`, [`error`] maps errors to JavaScript errors with stable
//! codes, [`events`] forwards lifecycle events, and [`runtime`] bridges tokio tasks and
//! the JavaScript thread (with its JavaScript half, `runtime.js`). The generated
//! `index.d.ts` documents the JavaScript API; `test/` is its `node --test` suite.

// napi-rs generates `unsafe` glue for every exported item, so this crate cannot forbid
// it; its own code has one `unsafe` block (`runtime::unknown_static`).
#![allow(unsafe_code)]

pub mod args;
pub mod config;
pub mod error;
pub mod events;
pub mod handle;
pub mod lane;
pub mod limits;
pub mod metrics;
pub mod redis;
pub mod runtime;
