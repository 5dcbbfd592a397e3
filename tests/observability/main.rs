//! Observability through the facade: lifecycle events, the metrics the queue records,
//! alerts, and the queue monitor.
//!
//! One module per behaviour, named as the sentence it checks: `cargo test --test
//! observability -- alerts` runs one module.

#[path = "../support/mod.rs"]
mod support;

mod alerts_fire_once_per_crossing;
mod events_are_emitted_at_each_stage;
mod metrics_count_what_the_queue_did;
mod monitor_stops_with_its_queue;
