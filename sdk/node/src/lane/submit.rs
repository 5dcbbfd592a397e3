//! `Lane.submit` and `Lane.submitWithHandle`: converts the arguments, watches the
//! `AbortSignal`, and hands the command to the queue — at once without storage (so it is
//! in its lane, in call order, when the call returns), or to the acceptor task with it.

use futures_util::FutureExt;
use napi::Env;
use napi::bindgen_prelude::{Either, Unknown};
use napi_derive::napi;
use serde_json::Value;

use a3s_lane::LaneError;

use super::Lane;
use super::durable::AcceptJob;
use crate::convert::{At, Js};
use crate::error::{JsFailure, ToJsError};
use crate::runtime::{JsRuntime, unknown_static};

/// Options of one submit.
#[napi(object, object_from_js = false)]
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Cancels the command when it aborts (before or while it runs); the promise then
    /// rejects with code `CANCELLED` and the signal's reason as `cause`.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Value>,
}

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
        if !handle && options.is_none() && self.jobs.is_none() {
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
        let (lane, command_type, payload) =
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
        // order) when this returns.
        match manager
            .submit_replayable(&lane, &command_type, payload)
            .now_or_never()
        {
            Some(Ok(core_handle)) => {
                let id = core_handle.id();
                if watched {
                    rt.bind(env, tokens.result, id)?;
                }
                if handle {
                    let object = rt.make_handle(env, tokens.result, id)?;
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
        let (lane, command_type, payload) =
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

/// The arguments of a submit (of a `Lane` or a `RedisQueue`): the lane, the command type
/// and the payload, with `options.signal` watched for the command whose result settles
/// through `result`; or the error to reject the submit with.
pub(crate) fn submit_arguments(
    rt: &JsRuntime,
    env: &Env,
    result: u64,
    lane: Js<String>,
    command_type: Js<String>,
    payload: Option<Unknown<'_>>,
    options: Option<Unknown<'_>>,
) -> napi::Result<Result<(String, String, Value), Unknown<'static>>> {
    let names = At::argument("lane")
        .name(lane)
        .and_then(|lane| Ok((lane, At::argument("commandType").name(command_type)?)));
    let (lane, command_type) = match names {
        Ok(names) => names,
        Err(failure) => return Ok(Err(unknown_static(failure.to_js(env)))),
    };
    let payload = match payload {
        None => Value::Null,
        Some(payload) => match primitive(env, &payload)? {
            Some(value) => value,
            // Objects, arrays and what JSON cannot hold: checked by `runtime.js`.
            None => match rt.payload_json(env, payload)? {
                Either::A(json) => match serde_json::from_str(&json) {
                    Ok(payload) => payload,
                    Err(error) => {
                        let failure = JsFailure::type_error(
                            "NOT_JSON",
                            format!("internal: the payload's JSON text did not parse ({error})"),
                        );
                        return Ok(Err(unknown_static(failure.to_js(env))));
                    }
                },
                Either::B(error) => return Ok(Err(unknown_static(error))),
            },
        },
    };
    if let Some(options) = options {
        match rt.submit_options(env, result, options)? {
            Ok(false) => {}
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
    Ok(Ok((lane, command_type, payload)))
}
