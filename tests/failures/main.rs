//! Failures through the facade: a panic, an error or a timeout releases its slot;
//! retries follow the policy; dead letters keep what is needed to re-drive them; a panic
//! in user policy code and extreme values never stop or poison the queue.
//!
//! One module per behaviour, named as the sentence it checks: `cargo test --test
//! failures -- retries` runs one module.

#[path = "../support/mod.rs"]
mod support;

mod a_failure_without_dead_letters_is_kept_as_failed;
mod a_panic_in_user_policy_code_never_stops_the_queue;
mod an_unknown_lane_is_reported_before_a_missing_handler;
mod dead_letters_keep_what_is_needed_to_redrive;
mod extreme_values_never_panic_or_poison_the_queue;
mod failures_release_their_slot;
mod retries_follow_the_policy;
