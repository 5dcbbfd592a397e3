//! The conformance suite: each behaviour of the client surface written once and run on
//! every engine — in process, in process with `LocalStorage`, Redis, Redis Cluster.
//!
//! `conformance!` turns each behaviour into one test per engine it applies to, named
//! `<behaviour>::<engine>`, so `cargo test --test conformance -- redis_cluster` runs one
//! engine's column and `-- cancel` one behaviour's row. A behaviour that does not apply
//! to an engine (durability of an in-memory queue, a global budget on Redis) lists the
//! engines it runs on; docs/CONFORMANCE.md keeps the matrix.
//!
//! The Redis engines need `A3S_LANE_REDIS_URL` and `A3S_LANE_REDIS_CLUSTER_URLS`
//! (`bash scripts/test.sh` starts throwaway servers); without them those tests fail
//! saying so.
#![cfg(all(feature = "redis", feature = "sqlite"))]
// A test binary: its `pub` items are shared between its modules, not an API.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

#[path = "../support/mod.rs"]
mod support;

mod engine;

mod cancel;
mod failures;
mod groups;
mod keys;
mod lifecycle;
mod order;
mod parity;
mod pause;
mod progress;
mod retention;
mod schedules;
mod timing;

use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{CommandContext, Handler, HandlerRegistry, LaneError, Result, handler_fn};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

/// How long any single wait in the suite may take before the test fails. Generous: the
/// suite runs on a loaded 2-core machine next to the SDK builds.
pub const WAIT: Duration = Duration::from_secs(20);

/// Generates `mod <behaviour> { fn in_process, local_storage, redis, redis_cluster }`
/// (or the listed engines) from `async fn <behaviour>(Engine)`.
#[macro_export]
macro_rules! conformance {
    ($behaviour:ident) => {
        $crate::conformance!($behaviour: in_process, local_storage, redis, redis_cluster);
    };
    ($behaviour:ident: $($engine:ident),+) => {
        mod $behaviour {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $engine() {
                    super::$behaviour($crate::engine_of!($engine)).await;
                }
            )+
        }
    };
}

#[macro_export]
macro_rules! engine_of {
    (in_process) => {
        $crate::engine::Engine::InProcess
    };
    (local_storage) => {
        $crate::engine::Engine::LocalStorage
    };
    (redis) => {
        $crate::engine::Engine::Redis
    };
    (redis_cluster) => {
        $crate::engine::Engine::RedisCluster
    };
}

/// Awaits `future`, failing the test after [`WAIT`].
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// A handler that reports each start (its payload's `"name"`) and then waits for a
/// permit of `gate` before it returns its payload. With `gate` open
/// ([`Gated::open`]) it returns at once.
#[derive(Clone)]
pub struct Gated {
    pub gate: Arc<Semaphore>,
    started: mpsc::UnboundedSender<String>,
}

impl Gated {
    /// A closed gate and the receiver of start reports.
    pub fn closed() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (started, rx) = mpsc::unbounded_channel();
        (
            Self {
                gate: Arc::new(Semaphore::new(0)),
                started,
            },
            rx,
        )
    }

    /// An open gate: runs return at once.
    pub fn open() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (gated, rx) = Self::closed();
        gated.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        (gated, rx)
    }

    pub fn handler(&self) -> impl Handler + use<> {
        let gate = self.gate.clone();
        let started = self.started.clone();
        handler_fn(move |payload: Value, _ctx: CommandContext| {
            let gate = gate.clone();
            let started = started.clone();
            async move {
                let name = payload["name"].as_str().unwrap_or_default().to_owned();
                let _ = started.send(name);
                gate.acquire()
                    .await
                    .expect("the gate is never closed")
                    .forget();
                Ok(payload)
            }
        })
    }
}

/// Receives the next start report.
pub async fn next_start(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    within("a command to start", rx.recv())
        .await
        .expect("the handler is alive")
}

/// A registry with `handler` under `command_type`.
pub fn registry(command_type: &str, handler: impl Handler) -> HandlerRegistry {
    let handlers = HandlerRegistry::default();
    handlers.register(command_type, handler);
    handlers
}

/// A payload naming a command.
pub fn named(name: &str) -> Value {
    json!({ "name": name })
}

/// The error of a result that must have failed.
pub fn failed(result: Result<Value>) -> LaneError {
    match result {
        Ok(value) => panic!("expected a failure, got Ok({value})"),
        Err(error) => error,
    }
}
