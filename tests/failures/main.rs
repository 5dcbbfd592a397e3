//! Failures through the facade: a panic, an error or a timeout releases its slot;
//! retries follow the policy; dead letters keep what is needed to re-drive them.
//!
//! One module per behaviour, named as the sentence it checks: `cargo test --test
//! failures -- retries` runs one module.

#[path = "../support/mod.rs"]
mod support;

mod dead_letters_keep_what_is_needed_to_redrive;
mod failures_release_their_slot;
mod retries_follow_the_policy;
