//! `Lane.submit` and `Lane.submitWithHandle`: converts the arguments, watches the
//! `AbortSignal`, reads the timing options (`delayMs`, `runAt`, `startBy`,
//! `startWithinMs`), the idempotency `key` and the `group`, and hands the command to the queue — at once without storage (so it
//! is in its lane, in call order, when the call returns; a full lane that waits for room
//! accepts it later, on tokio), or to the acceptor task with it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use napi::bindgen_prelude::{Either, Unknown};
use napi::{Env, ValueType};
use napi_derive::napi;
use serde_json::Value;

use a3s_lane::{LaneError, SubmitOptions as Timing};

use super::Lane;
use super::durable::AcceptJob;
use crate::convert::{At, Given, Js};
use crate::error::{JsFailure, ToJsError};
use crate::runtime::{JsRuntime, Settle, in_runtime, spawn, unknown_static};

/// Options of one submit.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Cancels the command when it aborts (before or while it runs); the promise then
    /// rejects with code `CANCELLED` and the signal's reason as `cause`.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Value>,
    /// Holds the command back this many milliseconds (it shows as `delayed`), then it
    /// takes its place at the back of its lane. Not together with `runAt`.
    pub delay_ms: Option<f64>,
    /// Holds the command back until this time (a time up to a second in the past is
    /// now), then it takes its place at the back of its lane. Not together with
    /// `delayMs`.
    #[napi(ts_type = "Date")]
    pub run_at: Option<Value>,
    /// If the command has not started by this time it never runs: its promise rejects
    /// with code `EXPIRED` (`LaneExpiredError`). Separate from the lane's `timeoutMs`,
    /// which bounds a run. Not together with `startWithinMs`.
    #[napi(ts_type = "Date")]
    pub start_by: Option<Value>,
    /// A start-by deadline this many milliseconds after the submit (see `startBy`).
    pub start_within_ms: Option<f64>,
    /// An idempotency key (a non-empty string of at most 512 bytes of UTF-8): while a
    /// command submitted with the same key to the same queue (any lane) is delayed,
    /// pending or running, this submit queues nothing and gets that command instead —
    /// its id, its result, and `isDuplicate: true` on the handle. Once it ended, the key
    /// is free again; a durable lane keeps keys across a restart.
    pub key: Option<String>,
    /// The command's group inside its lane (a tenant, a session: a non-empty string of
    /// at most 256 bytes of UTF-8, no control characters). A lane's groups take turns
    /// (round robin), so one group's backlog delays another group's next command by at
    /// most one turn; each group may have a cap and a rate limit (the lane's
    /// `groupMaxConcurrency`, `groupRateLimit`, `groupOverrides`), and is paused,
    /// resumed and cancelled as a whole (`pauseGroup`, `resumeGroup`, `cancelGroup`).
    /// Without one the command belongs to no group (it takes turns with the groups as
    /// one group of its own, with no group limit).
    pub group: Option<String>,
}

/// The checked arguments of a submit: lane, command type, payload, and the timing
/// options (`None` when none was given).
pub(crate) type Arguments = (String, String, Value, Option<Timing>);

/// A submit's promises: the one returned, and (for handles) the result's.
#[derive(Clone, Copy)]
struct Tokens {
    returned: u64,
    result: u64,
    handle: bool,
}

impl Lane {
    fn reject_tokens(&self, env: &Env, tokens: Tokens, error: Unknown<'_>) -> napi::Result<()> {
        let rt = self.runtime();
        rt.reject(env, tokens.result, None, error, false)?;
        if tokens.handle {
            rt.reject(env, tokens.returned, None, error, false)?;
        }
        Ok(())
    }

    pub(super) fn submit_inner<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        command_type: Js<String>,
        payload: Option<Unknown<'_>>,
        options: Option<Unknown<'_>>,
        handle: bool,
    ) -> napi::Result<Unknown<'env>> {
        let rt = self.runtime();
        if !handle && options.is_none() && self.jobs.is_none() && !self.waits_for_room {
            return self.submit_plain(env, lane, command_type, payload);
        }
        let result = rt.next_token();
        let (returned, promise) = if handle {
            rt.command_promise(env, result, true)?;
            let token = rt.next_token();
            (token, rt.command_promise(env, token, false)?)
        } else {
            (result, rt.command_promise(env, result, false)?)
        };
        let tokens = Tokens {
            returned,
            result,
            handle,
        };
        let watched = options.is_some();
        let (lane, command_type, payload, timing) =
            match submit_arguments(rt, env, result, lane, command_type, payload, options)? {
                Ok(arguments) => arguments,
                Err(error) => {
                    self.reject_tokens(env, tokens, error)?;
                    return Ok(promise);
                }
            };
        if let Some(jobs) = &self.jobs {
            let job = AcceptJob {
                lane,
                command_type,
                payload,
                timing: timing.unwrap_or_default(),
                token: tokens.returned,
                result_token: handle.then_some(tokens.result),
            };
            if jobs.send(job).is_err() {
                let failure =
                    JsFailure::error("QUEUE", "the lane's acceptor stopped; the lane is unusable");
                self.reject_tokens(env, tokens, failure.to_js(env))?;
            }
            return Ok(promise);
        }
        let Some(manager) = self.core.manager() else {
            // Only a lane that was shut down has no queue (a lane without storage builds
            // its queue in the constructor).
            let error = LaneError::ShutdownInProgress.to_js_failure().to_js(env);
            self.reject_tokens(env, tokens, error)?;
            return Ok(promise);
        };
        // Without storage, accepting takes no await: the command is in its lane (in call
        // order) when this returns. Only a full lane that waits for room makes it wait:
        // then it is accepted on tokio, and settles as a durable submit does.
        let timing = timing.unwrap_or_default();
        let accepted = if self.waits_for_room {
            let mut accept = Box::pin(async move {
                manager
                    .submit_replayable_with(&lane, &command_type, payload, &timing)
                    .await
            });
            match in_runtime(|| accept.as_mut().now_or_never()) {
                Some(accepted) => Some(accepted),
                None => {
                    let bridge = self.core.bridge.clone();
                    let result_token = handle.then_some(tokens.result);
                    spawn(async move {
                        match accept.await {
                            Ok(core_handle) => {
                                let id = core_handle.id();
                                let accepted = Settle::Accepted {
                                    id,
                                    result_token,
                                    duplicate: core_handle.is_duplicate(),
                                };
                                bridge.settle(returned, accepted);
                                let token = result_token.unwrap_or(returned);
                                bridge.settle_result(token, id, core_handle).await;
                            }
                            Err(error) => {
                                for token in std::iter::once(returned).chain(result_token) {
                                    bridge.settle(token, Settle::Failed(error.clone()));
                                }
                            }
                        }
                    });
                    return Ok(promise);
                }
            }
        } else {
            in_runtime(|| {
                manager
                    .submit_replayable_with(&lane, &command_type, payload, &timing)
                    .now_or_never()
            })
        };
        match accepted {
            Some(Ok(core_handle)) => {
                let id = core_handle.id();
                let duplicate = core_handle.is_duplicate();
                if duplicate {
                    rt.share(env, id)?;
                }
                if watched {
                    rt.bind(env, tokens.result, id)?;
                }
                if handle {
                    let object = rt.make_handle(env, tokens.result, id, duplicate)?;
                    rt.resolve_with(env, tokens.returned, object)?;
                }
                rt.await_result(env, result, core_handle, self.core.bridge.clone())?;
            }
            Some(Err(error)) => {
                self.reject_tokens(env, tokens, error.to_js_failure().to_js(env))?;
            }
            None => {
                let failure = JsFailure::error(
                    "QUEUE",
                    "internal: a submit without storage did not complete at once",
                );
                self.reject_tokens(env, tokens, failure.to_js(env))?;
            }
        }
        Ok(promise)
    }
}

impl Lane {
    /// `submit` without options on a lane without storage (the common case): the
    /// promise is made and settled in Rust, with no promise token of `runtime.js`.
    fn submit_plain<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        command_type: Js<String>,
        payload: Option<Unknown<'_>>,
    ) -> napi::Result<Unknown<'env>> {
        let rt = self.runtime();
        let rejected = |error: Unknown<'_>| -> napi::Result<Unknown<'env>> {
            let token = rt.next_token();
            let promise = rt.command_promise(env, token, false)?;
            rt.reject(env, token, None, error, false)?;
            Ok(promise)
        };
        let (lane, command_type, payload, _) =
            match submit_arguments(rt, env, 0, lane, command_type, payload, None)? {
                Ok(arguments) => arguments,
                Err(error) => return rejected(error),
            };
        let Some(manager) = self.core.manager() else {
            return rejected(LaneError::ShutdownInProgress.to_js_failure().to_js(env));
        };
        match manager
            .submit_replayable(&lane, &command_type, payload)
            .now_or_never()
        {
            Some(Ok(core_handle)) => rt.await_promise(env, core_handle, self.core.bridge.clone()),
            Some(Err(error)) => rejected(error.to_js_failure().to_js(env)),
            None => rejected(
                JsFailure::error(
                    "QUEUE",
                    "internal: a submit without storage did not complete at once",
                )
                .to_js(env),
            ),
        }
    }
}

/// A payload that is a JSON primitive (`undefined` and `null` as null, a boolean, a
/// finite number), read here without a round trip through JSON text; `None` for
/// anything else (strings too: `runtime.js` refuses one that is not valid Unicode).
fn primitive(env: &Env, payload: &Unknown<'_>) -> napi::Result<Option<Value>> {
    use napi::bindgen_prelude::FromNapiValue;
    use napi::{JsValue, ValueType};
    let raw = payload.raw();
    // SAFETY: `raw` is a live value of this call's scope, of the type just checked.
    Ok(match payload.get_type()? {
        ValueType::Undefined | ValueType::Null => Some(Value::Null),
        ValueType::Boolean => Some(Value::Bool(unsafe {
            bool::from_napi_value(env.raw(), raw)
        }?)),
        ValueType::Number => {
            let n = unsafe { f64::from_napi_value(env.raw(), raw) }?;
            // Whole numbers as integers, as JSON.stringify writes them; NaN and the
            // infinities go to runtime.js, which refuses them.
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Some(Value::from(n as i64))
            } else {
                serde_json::Number::from_f64(n).map(Value::Number)
            }
        }
        _ => None,
    })
}

/// A payload as JSON (`None`, like `undefined`, is null), or the `NOT_JSON` error to
/// reject with (path `payload`) when it holds a value JSON cannot (see docs/SDK_RULES.md).
/// For submits and schedules alike.
pub(crate) fn payload_value(
    rt: &JsRuntime,
    env: &Env,
    payload: Option<Unknown<'_>>,
) -> napi::Result<Result<Value, Unknown<'static>>> {
    let Some(payload) = payload else {
        return Ok(Ok(Value::Null));
    };
    if let Some(value) = primitive(env, &payload)? {
        return Ok(Ok(value));
    }
    // Objects, arrays and what JSON cannot hold: checked by `runtime.js`.
    Ok(match rt.payload_json(env, payload)? {
        Either::A(json) => serde_json::from_str(&json).map_err(|error| {
            let failure = JsFailure::type_error(
                "NOT_JSON",
                format!("internal: the payload's JSON text did not parse ({error})"),
            );
            unknown_static(failure.to_js(env))
        }),
        Either::B(error) => Err(unknown_static(error)),
    })
}

/// The arguments of a submit (of a `Lane` or a `RedisQueue`): the lane, the command type,
/// the payload and the timing options, with `options.signal` watched for the command
/// whose result settles through `result`; or the error to reject the submit with.
pub(crate) fn submit_arguments(
    rt: &JsRuntime,
    env: &Env,
    result: u64,
    lane: Js<String>,
    command_type: Js<String>,
    payload: Option<Unknown<'_>>,
    options: Option<Unknown<'_>>,
) -> napi::Result<Result<Arguments, Unknown<'static>>> {
    let names = At::argument("lane")
        .name(lane)
        .and_then(|lane| Ok((lane, At::argument("commandType").name(command_type)?)));
    let (lane, command_type) = match names {
        Ok(names) => names,
        Err(failure) => return Ok(Err(unknown_static(failure.to_js(env)))),
    };
    let payload = match payload_value(rt, env, payload)? {
        Ok(payload) => payload,
        Err(error) => return Ok(Err(error)),
    };
    let mut timing = None;
    if let Some(options) = options {
        let given = Given::of(env, &options);
        match rt.submit_options(env, result, options)? {
            Ok(false) => match submit_timing(given)? {
                Ok(read) => timing = read,
                Err(failure) => return Ok(Err(unknown_static(failure.to_js(env)))),
            },
            Ok(true) => {
                let failure = JsFailure::error(
                    "CANCELLED",
                    "command cancelled: its AbortSignal was already aborted, so it was not submitted",
                );
                return Ok(Err(unknown_static(failure.to_js(env))));
            }
            Err(error) => return Ok(Err(unknown_static(error))),
        }
    }
    Ok(Ok((lane, command_type, payload, timing)))
}

/// The timing options of a submit's `options` (an object, or null / undefined: checked
/// by `runtime.js`) as the core's, checked against the clock now; `None` when none is
/// given. Types and ranges are checked here; how the options combine (both of a pair, a
/// time in the past, a deadline before the start) is the core's rule, whose message is
/// given with the JavaScript names.
fn submit_timing(options: Given) -> napi::Result<Result<Option<Timing>, JsFailure>> {
    if !options.is_object()? {
        return Ok(Ok(None));
    }
    let mut timing = Timing::new();
    let mut given = false;
    let key = options.get("key")?;
    if key.kind()? != ValueType::Undefined {
        if key.kind()? != ValueType::String {
            let got = key.describe()?;
            let at = At::argument("options.key");
            return Ok(Err(at.type_error(format!(
                "options.key must be a string (an idempotency key), got {got}"
            ))));
        }
        given = true;
        timing = timing.with_key(key.to::<String>()?);
    }
    let group = options.get("group")?;
    if group.kind()? != ValueType::Undefined {
        if group.kind()? != ValueType::String {
            let got = group.describe()?;
            let at = At::argument("options.group");
            return Ok(Err(at.type_error(format!(
                "options.group must be a string (a group key, such as a tenant id), got {got}"
            ))));
        }
        given = true;
        timing = timing.with_group(group.to::<String>()?);
    }
    for key in ["delayMs", "runAt", "startBy", "startWithinMs"] {
        let value = options.get(key)?;
        if value.kind()? == ValueType::Undefined {
            continue;
        }
        given = true;
        let at = At::argument(format!("options.{key}"));
        let read = if key.ends_with("Ms") {
            millis(&at, value)?.map(|ms| match key {
                "delayMs" => timing.clone().with_delay(ms),
                _ => timing.clone().with_start_within(ms),
            })
        } else {
            time(&at, value)?.map(|t| match key {
                "runAt" => timing.clone().with_run_at(t),
                _ => timing.clone().with_start_by(t),
            })
        };
        match read {
            Ok(read) => timing = read,
            Err(failure) => return Ok(Err(failure)),
        }
    }
    if !given {
        return Ok(Ok(None));
    }
    Ok(match timing.resolve(SystemTime::now()) {
        Ok(_) => Ok(Some(timing)),
        Err(LaneError::InvalidInput(message)) => Err(JsFailure::range_error(
            "INVALID_ARGUMENT",
            format!("submit options: {}", js_names(&message)),
        )),
        Err(error) => Err(error.to_js_failure()),
    })
}

/// A span in milliseconds: a number, 0 or more.
fn millis(at: &At<'_>, value: Given) -> napi::Result<Result<Duration, JsFailure>> {
    if value.kind()? != ValueType::Number {
        let got = value.describe()?;
        return Ok(Err(at.type_error(format!(
            "{} must be a number of milliseconds, got {got}",
            at.path()
        ))));
    }
    Ok(at.millis(value.to()?))
}

/// A wall-clock time: a valid `Date`.
fn time(at: &At<'_>, value: Given) -> napi::Result<Result<SystemTime, JsFailure>> {
    let path = at.path();
    if !value.is_date()? {
        let got = value.describe()?;
        return Ok(Err(at.type_error(format!(
            "{path} must be a Date (such as new Date(Date.now() + 5000)), got {got}"
        ))));
    }
    let ms = value.date_value()?;
    if !ms.is_finite() {
        return Ok(Err(at.range_error(format!(
            "{path} is an invalid Date (its time is NaN); give a valid one, such as \
             new Date(Date.now() + 5000)"
        ))));
    }
    // A valid Date is within 8.64e15 ms of the epoch, which a SystemTime holds.
    let offset = Duration::from_secs_f64(ms.abs() / 1000.0);
    let at_time = if ms >= 0.0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    Ok(at_time.ok_or_else(|| at.range_error(format!("{path} is out of range"))))
}

/// A core message about submit options with the options' JavaScript names.
fn js_names(message: &str) -> String {
    let message = message
        .replace(
            "give a delay or a run_at, not both",
            "give delayMs or runAt, not both",
        )
        .replace(
            "give a start_by or a start_within, not both",
            "give startBy or startWithinMs, not both",
        )
        .replace("leave it unset", "leave it out")
        .replace("leave the group unset", "leave options.group out");
    let message = match message.strip_prefix("delay ") {
        Some(rest) => format!("delayMs {rest}"),
        None => message,
    };
    message
        .replace("start_within", "startWithinMs")
        .replace("start_by", "startBy")
        .replace("run_at", "runAt")
}
