//! Containing panics of user code the queue calls synchronously (policies, observers):
//! such a panic must never unwind through the scheduler and leave it half-updated or
//! leave a dispatched command unstarted.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`, turning a panic into its message. The scheduler's state is consistent at
/// every call site (nothing is half-changed around the call), so unwind safety holds.
pub(crate) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| message(panic.as_ref()))
}

fn message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}
