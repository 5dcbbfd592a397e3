//! Property tests of delays, start-by deadlines and bounded lanes on paused time. For
//! random workloads (delays, deadlines, cancels, a lane bound) every accepted command
//! ends exactly once, and:
//! - a command never starts before its delay is over;
//! - a command that expired never started, and expired no earlier than its deadline;
//! - a command that started did so no later than its deadline;
//! - a lane never holds more waiting commands than its `max_waiting`, and a refused
//!   submit was refused only when the lane was full;
//! - a submit with an idempotency key returns the live command holding the key if there
//!   is one (same id, same outcome) and otherwise makes a new command.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    CommandHandle, EventEmitter, LaneConfig, LaneError, QueueManagerBuilder, SubmitOptions,
    command_fn,
};
use parking_lot::Mutex;
use proptest::prelude::*;
use serde_json::Value;
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Op {
    Submit {
        delay: Option<u64>,
        within: Option<u64>,
        work: u64,
        key: Option<u8>,
    },
    Advance(u64),
    Cancel(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            6 => (
                prop::option::of(1u64..60),
                prop::option::of(0u64..80),
                0u64..30,
                prop::option::of(0u8..3),
            )
                .prop_map(|(delay, within, work, key)| Op::Submit { delay, within, work, key }),
            2 => (0u64..40).prop_map(Op::Advance),
            1 => (0usize..64).prop_map(Op::Cancel),
        ],
        1..50,
    )
}

struct Submitted {
    handle: CommandHandle,
    submitted: Duration,
    delay: Duration,
    within: Option<Duration>,
}

async fn run(max: usize, max_waiting: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane(
            "jobs",
            LaneConfig::new(1, max).with_max_waiting(max_waiting),
            0,
        )
        .build()
        .await
        .unwrap();
    manager.start().await.unwrap();
    let origin = Instant::now();
    let starts: Arc<Mutex<HashMap<u64, Duration>>> = Arc::default();
    let mut submitted: Vec<Submitted> = Vec::new();
    // The command that took each key, and the duplicates returned for it.
    let mut holders: HashMap<u8, u64> = HashMap::new();
    let mut duplicates: Vec<CommandHandle> = Vec::new();
    for op in ops {
        match op {
            Op::Submit {
                delay,
                within,
                work,
                key,
            } => {
                let delay = Duration::from_millis(delay.unwrap_or(0));
                let within = within.map(Duration::from_millis);
                let mut options = SubmitOptions::new().with_delay(delay);
                // A deadline must come after the start time (both zero: start now or never).
                let meetable = |w: &Duration| *w > delay || (w.is_zero() && delay.is_zero());
                if let (Some(within), true) = (within, within.as_ref().is_some_and(meetable)) {
                    options = options.with_start_within(within);
                }
                let within = within.filter(meetable);
                if let Some(key) = key {
                    options = options.with_key(format!("key-{key}"));
                }
                // The live holder of the key, if any (nothing runs between this check
                // and the submit: one thread, paused time).
                let holder = key
                    .and_then(|key| holders.get(&key).copied())
                    .filter(|&id| {
                        manager
                            .queue()
                            .command_status(id)
                            .is_some_and(|status| !status.state.is_final())
                    });
                let waiting_before = {
                    let stats = manager.stats().await;
                    stats.lanes["jobs"].pending + stats.lanes["jobs"].delayed
                };
                let starts = starts.clone();
                let command = command_fn("job", move |ctx| {
                    let starts = starts.clone();
                    async move {
                        starts.lock().insert(ctx.id(), origin.elapsed());
                        tokio::time::sleep(Duration::from_millis(work)).await;
                        Ok(Value::Null)
                    }
                });
                match manager
                    .submit_with_options("jobs", Box::new(command), &options)
                    .await
                {
                    Ok(handle) if handle.is_duplicate() => {
                        prop_assert_eq!(Some(handle.id()), holder, "a duplicate of a non-holder");
                        duplicates.push(handle);
                    }
                    Ok(handle) => {
                        prop_assert!(holder.is_none(), "a live key {key:?} made a new command");
                        if let Some(key) = key {
                            holders.insert(key, handle.id());
                        }
                        submitted.push(Submitted {
                            handle,
                            submitted: origin.elapsed(),
                            delay,
                            within,
                        });
                    }
                    Err(LaneError::LaneFull { limit, .. }) => {
                        prop_assert_eq!(limit, max_waiting);
                        prop_assert!(waiting_before >= max_waiting, "refused below the bound");
                    }
                    Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
                let stats = manager.stats().await;
                let waiting = stats.lanes["jobs"].pending + stats.lanes["jobs"].delayed;
                prop_assert!(waiting <= max_waiting, "{waiting} waiting > {max_waiting}");
            }
            Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Op::Cancel(n) => {
                if let Some(s) = submitted.get(n) {
                    manager.cancel(s.handle.id());
                }
            }
        }
    }
    let mut outcomes: HashMap<u64, Result<(), String>> = HashMap::new();
    for s in submitted {
        let id = s.handle.id();
        let result = tokio::time::timeout(Duration::from_secs(3600), s.handle)
            .await
            .expect("every command ends");
        let started = starts.lock().get(&id).copied();
        if let Some(started) = started {
            prop_assert!(
                started >= s.submitted + s.delay,
                "{id} started before its delay"
            );
            if let Some(within) = s.within {
                prop_assert!(
                    started <= s.submitted + within,
                    "{id} started after its deadline"
                );
            }
        }
        outcomes.insert(
            id,
            result.as_ref().map(|_| ()).map_err(|e| format!("{e:?}")),
        );
        match result {
            Err(LaneError::Expired(_)) => {
                prop_assert!(started.is_none(), "{id} expired after it started");
            }
            Ok(_) => prop_assert!(started.is_some()),
            Err(error) => prop_assert!(error.is_cancelled(), "{id}: {error:?}"),
        }
    }
    for duplicate in duplicates {
        let id = duplicate.id();
        let result = duplicate.await.map(|_| ()).map_err(|e| format!("{e:?}"));
        prop_assert_eq!(Some(&result), outcomes.get(&id), "a duplicate's outcome");
    }
    let stats = manager.stats().await;
    prop_assert_eq!(
        (stats.total_pending, stats.total_delayed, stats.total_active),
        (0, 0, 0)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn timing_invariants_hold(max in 1usize..3, max_waiting in 1usize..6, ops in ops()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(run(max, max_waiting, ops))?;
    }
}
