//! A queue's life through the facade: building it (configuration checks), submitting
//! replayable commands, cancelling, pausing and resuming, shutting down and draining;
//! and its handles crossing threads.
//!
//! One module per behaviour, named as the sentence it checks: `cargo test --test
//! lifecycle -- shutdown` runs one module.

#[path = "../support/mod.rs"]
mod support;

mod cancel_pause_and_resume;
mod caps_hold_when_a_handler_ignores_cancel;
mod config_is_validated_at_build;
mod distributed_handles_are_send_and_sync;
mod public_handles_are_send_and_sync;
mod replayable_commands_run_registered_handlers;
mod shutdown_and_drain;
