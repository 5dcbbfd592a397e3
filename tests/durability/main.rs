//! Durability with `LocalStorage`: unfinished commands come back after a restart,
//! shutdown keeps the commands it interrupts, recurring schedules keep their state, and
//! a store that cannot be trusted fails loudly. (The tests that kill or lock a store
//! from another process are their own binaries,
//! `tests/a_killed_process_loses_no_acknowledged_command.rs`,
//! `tests/a_killed_process_fires_no_schedule_instant_twice.rs`,
//! `tests/a_killed_process_leaves_a_record_of_every_0_3_command.rs` and
//! `tests/a_store_in_use_by_another_process_is_refused.rs`: each is a `main` that runs
//! itself as the child process.)
//!
//! One module per behaviour, named as the sentence it checks: `cargo test --test
//! durability -- restart` runs one module.

#[path = "../support/mod.rs"]
mod support;

mod boxed_commands_are_recorded_and_never_silently_lost;
mod concurrent_submits_of_one_key_make_one_command;
mod damaged_busy_or_full_stores_fail_loudly;
mod delayed_commands_keep_their_times_across_a_restart;
mod durable_commands_come_back_after_a_restart;
mod durable_submits_that_wait_keep_the_store_exact;
mod grouped_commands_come_back_in_their_groups;
mod schedules_keep_their_state_across_a_restart;
mod shutdown_keeps_interrupted_commands;
