//! Argument checks shared by the classes (`Lane`, `RedisQueue`, `RedisWorker`): the same
//! mistake gets the same `TypeError` or `RangeError` (code `INVALID_ARGUMENT`) whichever
//! class it is made with, and promise-returning methods turn them into rejections.

use std::time::Duration;

use a3s_lane::CommandId;
use napi::bindgen_prelude::{Either, Unknown};
use napi::{Env, ValueType};

use crate::config::{Input, name_argument};
use crate::error::{JsFailure, ToJsError};
use crate::runtime::JsRuntime;

/// Inspects a JavaScript value (see [`Input`]); an absent argument is `undefined`.
pub fn inspect(
    rt: &JsRuntime,
    env: &Env,
    value: Option<Unknown<'_>>,
) -> napi::Result<Result<Input, JsFailure>> {
    Ok(match value {
        None => Ok(Input::Undefined),
        Some(value) => Input::from_inspected(&rt.inspect(env, value)?),
    })
}

/// A non-empty string argument (`what` names it in the error).
pub fn name(
    rt: &JsRuntime,
    env: &Env,
    what: &str,
    value: Either<String, Unknown<'_>>,
) -> napi::Result<Result<String, JsFailure>> {
    Ok(match value {
        Either::A(s) => name_argument(what, &Input::String(s)),
        Either::B(other) => match inspect(rt, env, Some(other))? {
            Ok(input) => name_argument(what, &input),
            Err(failure) => Err(failure),
        },
    })
}

/// A command id argument: a whole number from 0 to 2^53 - 1.
pub fn command_id(
    rt: &JsRuntime,
    env: &Env,
    value: Unknown<'_>,
) -> napi::Result<Result<CommandId, JsFailure>> {
    let input = match inspect(rt, env, Some(value))? {
        Ok(input) => input,
        Err(failure) => return Ok(Err(failure)),
    };
    Ok(match input {
        Input::Number(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => {
            Ok(n as CommandId)
        }
        Input::Number(n) => Err(JsFailure::range_error(
            "INVALID_ARGUMENT",
            format!("a command id is a whole number of 0 or more, got {n}"),
        )),
        other => Err(JsFailure::type_error(
            "INVALID_ARGUMENT",
            format!("a command id must be a number, got {}", other.describe()),
        )),
    })
}

/// A duration in milliseconds (`what` names it); `positive` rejects zero.
pub fn millis(what: &str, input: &Input, positive: bool) -> Result<Duration, JsFailure> {
    match input {
        Input::Number(ms) if *ms > 0.0 || (!positive && *ms == 0.0) => {
            Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
                JsFailure::range_error("INVALID_ARGUMENT", format!("{what} is too large: {ms}"))
            })
        }
        Input::Number(ms) => Err(JsFailure::range_error(
            "INVALID_ARGUMENT",
            if positive {
                format!("{what} must be greater than 0, got {ms}")
            } else {
                format!("{what} must be 0 or more, got {ms}")
            },
        )),
        other => Err(JsFailure::type_error(
            "INVALID_ARGUMENT",
            format!("{what} must be a number, got {}", other.describe()),
        )),
    }
}

/// Throws unless `value` is a function; `what` says whose function it is.
pub fn function(rt: &JsRuntime, env: &Env, what: &str, value: Unknown<'_>) -> napi::Result<()> {
    if value.get_type()? == ValueType::Function {
        return Ok(());
    }
    let described = inspect(rt, env, Some(value))?
        .map(|input| input.describe())
        .unwrap_or_else(|_| "something else".into());
    Err(JsFailure::type_error(
        "INVALID_ARGUMENT",
        format!("{what} must be a function, got {described}"),
    )
    .throw(env))
}

/// A promise already rejected with `error`.
pub fn rejected<'env>(
    rt: &JsRuntime,
    env: &'env Env,
    error: &impl ToJsError,
) -> napi::Result<Unknown<'env>> {
    let token = rt.next_token();
    let promise = rt.promise(env, token)?;
    rt.reject_with(env, token, error)?;
    Ok(promise)
}

/// A promise already resolved with the JSON value `json` (`None`: `undefined`).
pub fn settled<'env>(
    rt: &JsRuntime,
    env: &'env Env,
    json: Option<String>,
) -> napi::Result<Unknown<'env>> {
    let token = rt.next_token();
    let promise = rt.promise(env, token)?;
    rt.resolve(env, token, json, None)?;
    Ok(promise)
}
