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
//! | `INVALID_ARGUMENT`  | `TypeError` / `RangeError` | any other invalid argument of a method (the  |
//! |                     |              | core's `InvalidInput`: a start time in the past, say)       |
//! | `TIMEOUT`           | `Error`      | the lane's `timeoutMs` passed, or `drain()` ran out of time |
//! | `CANCELLED`         | `Error`      | cancelled by `cancel()`, an `AbortSignal` or `shutdownNow()`|
//! | `SHUTDOWN`          | `Error`      | the lane is shutting down and accepts no new commands       |
//! | `STORAGE`           | `Error`      | the durable store or Redis failed                           |
//! | `QUEUE`             | `Error`      | any other refusal by the queue                              |
//! | `COMMAND_FAILED`    | `Error`      | a handler failed and its own error is not available (a      |
//! |                     |              | `RedisWorker`'s, in another process)                        |
//! | `EXPIRED`           | `Error`      | not started by its start-by deadline (`startBy`,            |
//! |                     |              | `startWithinMs`); it never ran                              |
//! | `LANE_FULL`         | `Error`      | the lane holds `maxWaiting` commands (`lane`, `limit` say   |
//! |                     |              | which and its bound)                                        |
//!
//! | `NOT_JSON`          | `TypeError`  | a payload or result JSON cannot hold (`path` says where)    |
//!
//! Each code has its exported class (`LaneTimeoutError`, ...; all `LaneError`s), made
//! once per JavaScript environment by `errors.js`; every error above is an instance of
//! it (`instanceof` checks the code, so an argument error is both a `TypeError` or
//! `RangeError` and a `LaneInvalidArgumentError`, say).
//!
//! A handler's own error (thrown, or the rejection of its promise) reaches the
//! submitter unchanged — the very thrown value — so it carries whatever `code` the
//! handler gave it.

use std::cell::RefCell;

use a3s_lane::LaneError;
use napi::bindgen_prelude::{Function, FunctionRef, Object, ObjectRef, Unknown};
use napi::{Env, Status};
use napi_derive::napi;

/// The source of the error classes, compiled once per environment.
const SOURCE: &str = include_str!("errors.js");

/// The names of the exported classes, as `errors.js` makes them.
const CLASS_NAMES: [&str; 14] = [
    "LaneError",
    "LaneNotFoundError",
    "LaneHandlerNotFoundError",
    "LaneConfigError",
    "LaneInvalidArgumentError",
    "LaneNotJsonError",
    "LaneTimeoutError",
    "LaneCancelledError",
    "LaneShutdownError",
    "LaneStorageError",
    "LaneQueueError",
    "LaneCommandError",
    "LaneExpiredError",
    "LaneFullError",
];

type MakeFn = FunctionRef<
    napi::bindgen_prelude::FnArgs<(&'static str, &'static str, String)>,
    Unknown<'static>,
>;

/// This thread's environment's error classes (each environment has its own thread).
/// Never dropped: the references live as long as their environment (dropping them at
/// thread exit, after the environment, would be a use after free).
struct Classes {
    env: napi::sys::napi_env,
    /// `{ classes, make, ... }`, as `errors.js` returns it.
    kit: std::mem::ManuallyDrop<ObjectRef>,
    make: std::mem::ManuallyDrop<MakeFn>,
}

thread_local! {
    static CLASSES: RefCell<Option<Classes>> = const { RefCell::new(None) };
}

/// Makes this environment's error classes (once) and returns `{ classes, make }`:
/// the classes by name, and `make(code, kind, message)` (for `runtime.js`).
pub fn error_kit<'env>(env: &'env Env) -> napi::Result<Object<'env>> {
    CLASSES.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some(made) = slot.as_ref()
            && made.env == env.raw()
        {
            return made.kit.get_value(env);
        }
        let factory: Function<'_, (), Object<'_>> = env.run_script(SOURCE)?;
        let made = factory.call(())?;
        let make: Function<
            '_,
            napi::bindgen_prelude::FnArgs<(&'static str, &'static str, String)>,
            Unknown<'_>,
        > = made
            .get("make")?
            .ok_or_else(|| napi::Error::from_reason("errors.js has no `make`"))?;
        *slot = Some(Classes {
            env: env.raw(),
            kit: std::mem::ManuallyDrop::new(made.create_ref()?),
            make: std::mem::ManuallyDrop::new(make.create_ref()?),
        });
        Ok(made)
    })
}

/// Adds the error classes to the module's exports.
#[napi(module_exports)]
pub fn export_error_classes(mut exports: Object<'_>, env: Env) -> napi::Result<()> {
    let made: Object<'_> = error_kit(&env)?
        .get("classes")?
        .ok_or_else(|| napi::Error::from_reason("errors.js has no `classes`"))?;
    for name in CLASS_NAMES {
        let class: Unknown<'_> = made
            .get(name)?
            .ok_or_else(|| napi::Error::from_reason(format!("errors.js has no `{name}`")))?;
        exports.set(name, class)?;
    }
    // Calling a class without `new` throws a TypeError instead of wrapping `globalThis`.
    let guard: Function<'_, Unknown<'_>, Unknown<'_>> =
        error_kit(&env)?
            .get("guardConstructor")?
            .ok_or_else(|| napi::Error::from_reason("errors.js has no `guardConstructor`"))?;
    for name in ["Lane", "SharedBudget"] {
        if let Some(class) = exports.get::<Unknown<'_>>(name)? {
            let guarded = guard.call(class)?;
            exports.set(name, guarded)?;
        }
    }
    Ok(())
}

/// Makes the error of `failure` with this environment's classes.
fn make_error<'env>(env: &'env Env, failure: &JsFailure) -> napi::Result<Unknown<'env>> {
    error_kit(env)?;
    let kind = match failure.class {
        ErrorClass::Error => "error",
        ErrorClass::Type => "type",
        ErrorClass::Range => "range",
    };
    CLASSES.with(|slot| {
        let slot = slot.borrow();
        let made = slot
            .as_ref()
            .ok_or_else(|| napi::Error::from_reason("the error classes are missing"))?;
        let error = made
            .make
            .borrow_back(env)?
            .call((failure.code, kind, failure.message.clone()).into())
            .map(|error| crate::runtime::unknown_static(error))?;
        if let Some(full) = &failure.lane_full {
            let mut object = Object::from_raw(env.raw(), napi::JsValue::raw(&error));
            object.set("lane", full.lane.as_str())?;
            object.set("limit", full.limit as f64)?;
        }
        Ok(error)
    })
}

/// Which lane was full and its bound: the `lane` and `limit` of a `LaneFullError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneFull {
    /// The lane.
    pub lane: String,
    /// Its `maxWaiting`.
    pub limit: usize,
}

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
    /// For code `LANE_FULL`: the lane and its bound (the error's `lane` and `limit`).
    pub lane_full: Option<Box<LaneFull>>,
}

impl JsFailure {
    /// A `TypeError` with `code`.
    pub fn type_error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Type,
            code,
            message: message.into(),
            lane_full: None,
        }
    }

    /// A `RangeError` with `code`.
    pub fn range_error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Range,
            code,
            message: message.into(),
            lane_full: None,
        }
    }

    /// A plain `Error` with `code`.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Error,
            code,
            message: message.into(),
            lane_full: None,
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
        match make_error(env, self) {
            Ok(error) => error,
            // Only a broken errors.js gets here: a plain error still says what happened.
            Err(_) => {
                let error = napi::Error::new(self.code, self.message.clone());
                napi::JsError::from(error).into_unknown(*env)
            }
        }
    }

    /// Throws the error in `env` and returns the marker a `#[napi]` function returns so
    /// that napi-rs leaves the pending exception as it is.
    pub fn throw(&self, env: &Env) -> napi::Error {
        let error = self.to_js(env);
        match env.throw(error) {
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
            LaneError::ConfigError(_) => {
                // The bounded lane's options, with the names a Node user gives them.
                let message = message
                    .replace("max_waiting must be", "maxWaiting must be")
                    .replace("the when_full wait timeout", "fullWaitTimeoutMs")
                    .replace("when_full wait timeout", "fullWaitTimeoutMs")
                    .replace(
                        "(WhenFull::Reject fails at once)",
                        "(whenFull: 'reject' fails at once)",
                    )
                    // A lane's retention (`keepLast`, `keepForMs`).
                    .replace("retention keep_last", "keepLast")
                    .replace("retention keep_for", "keepForMs")
                    .replace(
                        "use Retention::none() to keep nothing",
                        "use keepLast: 0 to keep nothing",
                    )
                    // A lane's group limits (`groupMaxConcurrency`, `groupRateLimit`,
                    // `groupOverrides`).
                    .replace(
                        "default group limits",
                        "default group limits (groupMaxConcurrency, groupRateLimit)",
                    )
                    .replace("group max_concurrency of 0", "group maxConcurrency of 0")
                    .replace("or pause_group to hold", "or pauseGroup to hold")
                    .replace(
                        "(RateLimitConfig::per_second, per_minute, per_hour or token_bucket)",
                        "({ perSecond: n }, { perMinute: n }, { perHour: n } or \
                         { tokenBucket: { rate, periodMs, burst } })",
                    )
                    .replace("group override: invalid input: ", "groupOverrides: ")
                    .replace("; leave the group unset for a command of no group", "");
                JsFailure::range_error("CONFIG", message)
            }
            LaneError::Timeout(_) => JsFailure::error("TIMEOUT", message),
            LaneError::Cancelled(_) => JsFailure::error("CANCELLED", message),
            LaneError::ShutdownInProgress => JsFailure::error("SHUTDOWN", message),
            LaneError::Storage(_) => JsFailure::error("STORAGE", message),
            LaneError::CommandError(_) | LaneError::NonRetryable(_) => {
                JsFailure::error("COMMAND_FAILED", message)
            }
            // A value the queue refused at the call (a start time in the past, a delay
            // and a start time together): a bad argument.
            LaneError::InvalidInput(_) => JsFailure::range_error("INVALID_ARGUMENT", message),
            LaneError::Expired(_) => JsFailure::error("EXPIRED", message),
            LaneError::LaneFull { lane, limit } => {
                // The core names its Rust option; a Node user sets `whenFull: 'wait'`.
                let message = message
                    .replace("its max_waiting", "its maxWaiting")
                    .replace("raise max_waiting", "raise maxWaiting")
                    .replace("(WhenFull::Wait)", "(whenFull: 'wait')");
                JsFailure {
                    lane_full: Some(Box::new(LaneFull {
                        lane: lane.clone(),
                        limit: *limit,
                    })),
                    ..JsFailure::error("LANE_FULL", message)
                }
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
