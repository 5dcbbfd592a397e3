//! How errors reach JavaScript: every failure becomes an `Error`, `TypeError` or
//! `RangeError` with a stable `code` property. [`ToJsError`] is the one mapping trait;
//! it is implemented for the queue's [`LaneError`] and for the binding's own input
//! checks ([`JsFailure`]).
//!
//! | code                | class        | when                                                        |
//! |---------------------|--------------|-------------------------------------------------------------|
//! | `LANE_NOT_FOUND`    | `RangeError` | a lane id the queue does not have                           |
//! | `HANDLER_NOT_FOUND` | `RangeError` | a command type without a handler                            |
//! | `CONFIG`            | `TypeError` / `RangeError` | an invalid option (the core's `ConfigError`, |
//! |                     |              | or a value of the wrong type or out of its Rust type's range)|
//! | `INVALID_ARGUMENT`  | `TypeError` / `RangeError` | any other invalid argument of a method       |
//! | `TIMEOUT`           | `Error`      | the lane's `timeoutMs` passed, or `drain()` ran out of time |
//! | `CANCELLED`         | `Error`      | cancelled by `cancel()`, an `AbortSignal` or `shutdownNow()`|
//! | `SHUTDOWN`          | `Error`      | the lane is shutting down and accepts no new commands       |
//! | `STORAGE`           | `Error`      | the durable store or Redis failed                           |
//! | `QUEUE`             | `Error`      | any other refusal by the queue                              |
//! | `COMMAND_FAILED`    | `Error`      | a handler failed and its own error is not available (a      |
//! |                     |              | `RedisWorker`'s, in another process)                        |
//!
//! A handler's own error (thrown, or the rejection of its promise) reaches the
//! submitter unchanged — same object, message and stack — so it carries whatever `code`
//! the handler gave it.

use a3s_lane::LaneError;
use napi::bindgen_prelude::Unknown;
use napi::{Env, JsError, JsRangeError, JsTypeError, Status};

/// The JavaScript class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `Error`
    Error,
    /// `TypeError`: a value of the wrong type.
    Type,
    /// `RangeError`: a value of the right type that is not allowed.
    Range,
}

/// An error on its way to JavaScript: class, stable code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsFailure {
    /// The JavaScript class.
    pub class: ErrorClass,
    /// The value of the error's `code` property.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl JsFailure {
    /// A `TypeError` with `code`.
    pub fn type_error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Type,
            code,
            message: message.into(),
        }
    }

    /// A `RangeError` with `code`.
    pub fn range_error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Range,
            code,
            message: message.into(),
        }
    }

    /// A plain `Error` with `code`.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Error,
            code,
            message: message.into(),
        }
    }

    /// The same error, its message prefixed with where the value was given
    /// (`lanes.api.retry: …`), for core errors that name the value but not its place.
    pub fn within(mut self, path: &str) -> Self {
        self.message = format!("{path}: {}", self.message);
        self
    }

    /// Creates the JavaScript error object.
    pub fn to_js<'env>(&self, env: &'env Env) -> Unknown<'env> {
        let error = napi::Error::new(self.code, self.message.clone());
        match self.class {
            ErrorClass::Error => JsError::from(error).into_unknown(*env),
            ErrorClass::Type => JsTypeError::from(error).into_unknown(*env),
            ErrorClass::Range => JsRangeError::from(error).into_unknown(*env),
        }
    }

    /// Throws the error in `env` and returns the marker a `#[napi]` function returns so
    /// that napi-rs leaves the pending exception as it is.
    pub fn throw(&self, env: &Env) -> napi::Error {
        let message = self.message.as_str();
        let thrown = match self.class {
            ErrorClass::Error => env.throw_error(message, Some(self.code)),
            ErrorClass::Type => env.throw_type_error(message, Some(self.code)),
            ErrorClass::Range => env.throw_range_error(message, Some(self.code)),
        };
        match thrown {
            Ok(()) => napi::Error::from_status(Status::PendingException),
            Err(error) => error,
        }
    }
}

/// Maps an error to the JavaScript error it becomes.
pub trait ToJsError {
    /// The class, code and message of the JavaScript error.
    fn to_js_failure(&self) -> JsFailure;
}

impl ToJsError for JsFailure {
    fn to_js_failure(&self) -> JsFailure {
        self.clone()
    }
}

impl ToJsError for LaneError {
    fn to_js_failure(&self) -> JsFailure {
        let message = self.to_string();
        match self {
            LaneError::LaneNotFound { .. } => JsFailure::range_error("LANE_NOT_FOUND", message),
            LaneError::HandlerNotFound { .. } => {
                JsFailure::range_error("HANDLER_NOT_FOUND", message)
            }
            LaneError::ConfigError(_) => JsFailure::range_error("CONFIG", message),
            LaneError::Timeout(_) => JsFailure::error("TIMEOUT", message),
            LaneError::Cancelled(_) => JsFailure::error("CANCELLED", message),
            LaneError::ShutdownInProgress => JsFailure::error("SHUTDOWN", message),
            LaneError::Storage(_) => JsFailure::error("STORAGE", message),
            LaneError::CommandError(_) | LaneError::NonRetryable(_) => {
                JsFailure::error("COMMAND_FAILED", message)
            }
            _ => JsFailure::error("QUEUE", message),
        }
    }
}

impl From<LaneError> for JsFailure {
    fn from(error: LaneError) -> Self {
        error.to_js_failure()
    }
}

/// The JavaScript error of `error` raised by a method because of its argument `name`
/// (a timed pause too long, say): a core `ConfigError` is then code `INVALID_ARGUMENT`,
/// naming the argument; any other error maps as usual.
pub fn argument_failure(error: &LaneError, name: &str) -> JsFailure {
    match error {
        LaneError::ConfigError(_) => {
            JsFailure::range_error("INVALID_ARGUMENT", format!("{name}: {error}"))
        }
        _ => error.to_js_failure(),
    }
}

/// Whether `error` is a handler's failure (the submitter then gets the handler's own error).
pub fn is_handler_failure(error: &LaneError) -> bool {
    matches!(
        error,
        LaneError::CommandError(_) | LaneError::NonRetryable(_)
    )
}

/// Throws `error` as its JavaScript error; for `?` in synchronous `#[napi]` methods.
pub fn throw(env: &Env, error: &impl ToJsError) -> napi::Error {
    error.to_js_failure().throw(env)
}
