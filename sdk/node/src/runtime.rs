//! The bridge between the queue's tokio tasks and the JavaScript thread.
//!
//! - [`JsRuntime`]: the JavaScript half (`runtime.js`, compiled once per `Lane`). It
//!   keeps what lives on the JavaScript thread — handlers, the contexts of running
//!   commands, the promises handed to submitters, listeners — so only strings and
//!   numbers cross the boundary.
//! - [`Mailbox`]: one weak (unref'd) threadsafe function per `Lane`, through which tokio
//!   tasks hand [`Mail`] to the JavaScript thread. Node drains it in batches, so a busy
//!   queue pays one wake-up for many messages.
//! - [`JsHandler`]: the core [`Handler`] that runs a command by mailing it to its
//!   JavaScript function and awaiting the answer. A cancel aborts the handler's
//!   `ctx.signal`; a timeout, or the end of the cancel grace, abandons it.
//!
//! The process is kept alive only by pending promises (see `runtime.js`): the mailbox
//! and the tokio worker threads never hold the event loop, so after `shutdown()` the
//! process exits on its own.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use a3s_lane::{
    CommandContext, CommandHandle as CoreHandle, CommandId, EventStream, Handler, LaneError,
};
use async_trait::async_trait;
use futures_util::Stream;
use napi::bindgen_prelude::{Either, FnArgs, Function, FunctionRef, Object, ToNapiValue, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue, Status, sys};
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::{JsFailure, ToJsError, is_handler_failure};

/// The source of the JavaScript half, compiled with `napi_run_script`.
const SOURCE: &str = include_str!("runtime.js");

/// Spawns `future` on the addon's tokio runtime.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    napi::bindgen_prelude::spawn(future)
}

/// Runs `f` inside the addon's tokio runtime context (for code that spawns tasks).
pub fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
    napi::bindgen_prelude::within_runtime_if_available(f)
}

/// A message for the JavaScript thread.
#[derive(Debug)]
pub enum Mail {
    /// Run a command's handler.
    Run(RunRequest),
    /// Abort a running handler's `ctx.signal`; `forget` also abandons its result.
    Abort {
        /// The run.
        key: u64,
        /// The abort reason's `code`.
        code: &'static str,
        /// The abort reason's message.
        message: String,
        /// Whether the run is abandoned.
        forget: bool,
    },
    /// Settle the promise of `token`.
    Settle {
        /// The promise.
        token: u64,
        /// How.
        settle: Settle,
    },
    /// Keep the process alive (until the matching [`Mail::Release`]).
    Hold,
    /// Let the process exit again (when nothing else keeps it alive).
    Release,
    /// The result of the command awaited under `token` may be ready: poll it again.
    Completed {
        /// The awaited result.
        token: u64,
    },
    /// Events may be waiting in the subscription: hand them to listeners.
    EventsReady,
    /// The subscription of a lane whose queue was built after listeners were added.
    Subscribe(EventStream),
    /// Poll one of the queue's command runners (see `crate::spawner`).
    Poll(Arc<crate::spawner::RunnerTask>),
}

/// One attempt of a command, for its JavaScript handler.
#[derive(Debug)]
pub struct RunRequest {
    key: u64,
    command_type: Arc<str>,
    payload: Value,
    ctx: CommandContext,
    record_failure: bool,
    reply: oneshot::Sender<JsOutcome>,
}

/// How a handler's attempt ended, as seen from JavaScript.
#[derive(Debug)]
enum JsOutcome {
    /// It returned (or resolved with) this JSON text; `None` for `undefined`.
    Returned(Option<String>),
    /// It threw (or rejected): the error's stack (or text), and whether it may be retried.
    Threw { summary: String, retryable: bool },
}

/// How to settle a promise handed to JavaScript.
#[derive(Debug)]
pub enum Settle {
    /// The final result of a command (its JSON text).
    Result {
        /// The command.
        id: CommandId,
        /// Its result.
        result: Result<String, LaneError>,
    },
    /// A durable submit was accepted: its signal may cancel it now; a handle resolves.
    Accepted {
        /// The command.
        id: CommandId,
        /// For `submitWithHandle`: the token of the handle's result promise.
        result_token: Option<u64>,
        /// The submit's idempotency key was held by command `id`: nothing was queued.
        duplicate: bool,
    },
    /// The operation failed.
    Failed(LaneError),
    /// The operation failed with an error of the binding's own.
    Rejected(crate::error::JsFailure),
    /// The operation finished: resolves with `undefined`.
    Done,
    /// The operation finished: resolves with a number.
    Count(usize),
    /// The operation finished: resolves with this value.
    Value(ToJs),
}

impl Settle {
    /// Resolves with the value of `outcome`, or rejects with its error.
    pub fn of<T: ToNapiValue + Send + 'static>(outcome: Result<T, JsFailure>) -> Self {
        match outcome {
            Ok(value) => Self::Value(ToJs::new(value)),
            Err(failure) => Self::Rejected(failure),
        }
    }
}

/// A Rust value on its way to a promise, made into a JavaScript value on the JavaScript
/// thread (a `#[napi(object)]` struct, a string, `()` for `undefined`, ...).
pub struct ToJs(Box<dyn FnOnce(sys::napi_env) -> napi::Result<sys::napi_value> + Send>);

impl ToJs {
    /// Wraps `value`.
    pub fn new<T: ToNapiValue + Send + 'static>(value: T) -> Self {
        // SAFETY: called on the JavaScript thread with its env, by `into_js`.
        Self(Box::new(move |env| unsafe { T::to_napi_value(env, value) }))
    }

    /// The JavaScript value.
    pub fn into_js<'env>(self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let raw = (self.0)(env.raw())?;
        // SAFETY: `raw` was just made in `env`, in the current callback scope.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
    }
}

impl std::fmt::Debug for ToJs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToJs")
    }
}

/// A function called with [`call_raw`] (its arguments are made by the caller).
type RawFn = FunctionRef<(), Unknown<'static>>;
type AbortFn = FunctionRef<FnArgs<(f64, &'static str, String, bool)>, Unknown<'static>>;
type TokenFn = FunctionRef<f64, Unknown<'static>>;
type ResolveFn = FunctionRef<FnArgs<(f64, Option<String>, f64)>, Unknown<'static>>;
type RejectFn = FunctionRef<FnArgs<(f64, f64, Unknown<'static>, bool)>, Unknown<'static>>;
type ResolveWithFn = FunctionRef<FnArgs<(f64, Unknown<'static>)>, Unknown<'static>>;
type MakeHandleFn = FunctionRef<FnArgs<(f64, f64, bool)>, Unknown<'static>>;
type BindFn = FunctionRef<FnArgs<(f64, f64)>, bool>;
type StringFn = FunctionRef<String, Unknown<'static>>;
type OptionsFn = FunctionRef<FnArgs<(f64, Unknown<'static>)>, Either<u32, Unknown<'static>>>;
type HandleFn = FunctionRef<FnArgs<(String, Unknown<'static>)>, Unknown<'static>>;
type HandleAllFn = FunctionRef<Unknown<'static>, Unknown<'static>>;
type ValuePromiseFn = FunctionRef<FnArgs<(f64, Unknown<'static>)>, Unknown<'static>>;
type PayloadFn = FunctionRef<Unknown<'static>, Either<String, Unknown<'static>>>;
type ListenerFn = FunctionRef<FnArgs<(String, Unknown<'static>)>, Unknown<'static>>;
type VoidFn = FunctionRef<(), Unknown<'static>>;
type BoolFn = FunctionRef<bool, Unknown<'static>>;
type CommandPromiseFn = FunctionRef<FnArgs<(f64, bool)>, Unknown<'static>>;
type IterateFn = FunctionRef<FnArgs<(Option<Vec<String>>, u32, bool)>, Unknown<'static>>;

/// The functions of one `runtime.js` instance.
struct RuntimeFns {
    run: RawFn,
    reason: RawFn,
    forget: RawFn,
    parse: RawFn,
    abort: AbortFn,
    promise: TokenFn,
    value_promise: ValuePromiseFn,
    detached_promise: TokenFn,
    command_promise: CommandPromiseFn,
    resolve: ResolveFn,
    resolve_with: ResolveWithFn,
    reject: RejectFn,
    make_handle: MakeHandleFn,
    bind: BindFn,
    share: TokenFn,
    emit: StringFn,
    handle: HandleFn,
    handle_all: HandleAllFn,
    payload_json: PayloadFn,
    submit_options: OptionsFn,
    on: ListenerFn,
    off: ListenerFn,
    iterate: IterateFn,
    hold: VoidFn,
    release: VoidFn,
    set_started: BoolFn,
}

/// What the Rust callbacks of `runtime.js` act on.
pub trait NativeCallbacks: 'static {
    /// Cancels a command because the `AbortSignal` given to its submit fired (its
    /// outcome shows in the command's result).
    fn cancel(&self, id: CommandId);
    /// A handle's `cancel()`: cancels the command and returns a promise of the outcome.
    fn cancel_from_handle<'env>(
        &self,
        env: &'env Env,
        id: CommandId,
    ) -> napi::Result<Unknown<'env>>;
    /// Whether someone listens to events now (starts or stops reading them).
    fn events_wanted(&self, env: &Env, wanted: bool);
    /// Commands accepted and not finished (pending, delayed or running), for the report
    /// at exit.
    fn unfinished(&self) -> usize;
}

/// The JavaScript half of one `Lane`, and the state only the JavaScript thread touches.
pub struct JsRuntime {
    fns: RuntimeFns,
    runs: Rc<RefCell<HashMap<u64, RunSlot>>>,
    /// Results awaited on this thread: polled with a waker that mails `Completed`.
    awaited: RefCell<HashMap<u64, Awaited>>,
    /// Promises settled from Rust (`submit` without options) not settled yet: while
    /// started, they keep the process alive (one `hold()` of `runtime.js` for all).
    native_pending: Cell<usize>,
    /// Whether the lane runs commands (see [`JsRuntime::set_started`]).
    started: Cell<bool>,
    /// Set when a handler failed: `runtime.js` may keep its thrown value for the
    /// submitter, to forget when the command succeeds after all.
    failures_maybe: Rc<Cell<bool>>,
    callbacks: CallbackSlot,
    /// The lane's bridge, for the wakers of re-polled results (weak: the bridge owns
    /// the mailbox, whose callback owns this runtime).
    bridge: RefCell<std::sync::Weak<Bridge>>,
    /// The lane's event subscription while someone listens, read on this thread.
    events: RefCell<Option<EventStream>>,
    /// Whether listeners or iterators exist.
    events_wanted: Cell<bool>,
    next_token: Cell<u64>,
}

/// Where the native callbacks find the lane; set once the lane exists.
type CallbackSlot = Rc<RefCell<Option<Weak<dyn NativeCallbacks>>>>;

fn callback(slot: &CallbackSlot) -> Option<Rc<dyn NativeCallbacks>> {
    slot.borrow().as_ref().and_then(Weak::upgrade)
}

impl std::fmt::Debug for JsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsRuntime")
            .field("runs", &self.runs.borrow().len())
            .finish_non_exhaustive()
    }
}

/// A running attempt: where its answer goes, and its context for progress reports.
struct RunSlot {
    reply: oneshot::Sender<JsOutcome>,
    ctx: CommandContext,
}

fn get<T: napi::bindgen_prelude::FromNapiValue>(
    object: &Object<'_>,
    name: &str,
) -> napi::Result<T> {
    object.get::<T>(name)?.ok_or_else(|| {
        napi::Error::new(
            Status::GenericFailure,
            format!("runtime.js has no `{name}`"),
        )
    })
}

fn function_ref<Args, Return>(
    object: &Object<'_>,
    name: &str,
) -> napi::Result<FunctionRef<Args, Return>>
where
    Args: napi::bindgen_prelude::JsValuesTupleIntoVec,
    Return: napi::bindgen_prelude::FromNapiValue,
{
    get::<Function<'_, Args, Return>>(object, name)?.create_ref()
}

impl JsRuntime {
    /// Compiles `runtime.js` and creates this lane's instance of it.
    pub fn create(env: &Env) -> napi::Result<Rc<Self>> {
        let runs: Rc<RefCell<HashMap<u64, RunSlot>>> = Rc::default();
        let callbacks: CallbackSlot = Rc::default();
        let mut native = Object::new(env)?;

        let failures_maybe: Rc<Cell<bool>> = Rc::default();
        native.set(
            "settleRun",
            settle_run_function(env, Rc::downgrade(&runs), failures_maybe.clone())?,
        )?;
        let weak_runs = Rc::downgrade(&runs);
        native.set(
            "progress",
            env.create_function_from_closure::<(), _, _>("progress", move |ctx| {
                let (key, json): (f64, String) = ctx.args()?;
                if let Some(runs) = weak_runs.upgrade()
                    && let Some(slot) = runs.borrow().get(&(key as u64))
                {
                    let progress = serde_json::from_str(&json).unwrap_or(Value::Null);
                    slot.ctx.report_progress(progress);
                }
                Ok(())
            })?,
        )?;
        let slot = callbacks.clone();
        native.set(
            "cancel",
            env.create_function_from_closure::<(), _, _>("cancel", move |ctx| {
                let id: f64 = ctx.first_arg()?;
                if let Some(callbacks) = callback(&slot) {
                    callbacks.cancel(id as CommandId);
                }
                Ok(())
            })?,
        )?;
        let slot = callbacks.clone();
        native.set(
            "cancelHandle",
            env.create_function_from_closure::<(), _, _>("cancelHandle", move |ctx| {
                let id: f64 = ctx.first_arg()?;
                match callback(&slot) {
                    Some(callbacks) => callbacks
                        .cancel_from_handle(ctx.env, id as CommandId)
                        .map(unknown_static),
                    // The queue's object was collected: nothing is left to cancel.
                    None => ToJs::new(()).into_js(ctx.env).map(unknown_static),
                }
            })?,
        )?;
        let slot = callbacks.clone();
        native.set(
            "eventsWanted",
            env.create_function_from_closure::<(), _, _>("eventsWanted", move |ctx| {
                let wanted: bool = ctx.first_arg()?;
                if let Some(callbacks) = callback(&slot) {
                    callbacks.events_wanted(ctx.env, wanted);
                }
                Ok(())
            })?,
        )?;

        let slot = callbacks.clone();
        native.set(
            "unfinished",
            env.create_function_from_closure::<(), _, _>("unfinished", move |_| {
                Ok(callback(&slot).map_or(0, |callbacks| callbacks.unfinished()) as f64)
            })?,
        )?;
        native.set("errors", crate::error::error_kit(env)?)?;

        let factory: Function<'_, Object<'_>, Object<'_>> = env.run_script(SOURCE)?;
        let rt = factory.call(native)?;
        let fns = RuntimeFns {
            run: function_ref(&rt, "run")?,
            reason: function_ref(&rt, "reason")?,
            forget: function_ref(&rt, "forget")?,
            parse: function_ref(&rt, "parse")?,
            abort: function_ref(&rt, "abort")?,
            promise: function_ref(&rt, "promise")?,
            value_promise: function_ref(&rt, "valuePromise")?,
            detached_promise: function_ref(&rt, "detachedPromise")?,
            command_promise: function_ref(&rt, "commandPromise")?,
            resolve: function_ref(&rt, "resolve")?,
            resolve_with: function_ref(&rt, "resolveWith")?,
            reject: function_ref(&rt, "reject")?,
            make_handle: function_ref(&rt, "makeHandle")?,
            bind: function_ref(&rt, "bind")?,
            share: function_ref(&rt, "share")?,
            emit: function_ref(&rt, "emit")?,
            handle: function_ref(&rt, "handle")?,
            handle_all: function_ref(&rt, "handleAll")?,
            payload_json: function_ref(&rt, "payloadJson")?,
            submit_options: function_ref(&rt, "submitOptions")?,
            on: function_ref(&rt, "on")?,
            off: function_ref(&rt, "off")?,
            iterate: function_ref(&rt, "iterate")?,
            hold: function_ref(&rt, "hold")?,
            release: function_ref(&rt, "release")?,
            set_started: function_ref(&rt, "setStarted")?,
        };
        Ok(Rc::new(Self {
            fns,
            runs,
            awaited: RefCell::default(),
            native_pending: Cell::new(0),
            started: Cell::new(true),
            failures_maybe,
            callbacks,
            bridge: RefCell::default(),
            events: RefCell::default(),
            events_wanted: Cell::new(false),
            next_token: Cell::new(1),
        }))
    }

    /// Connects the native callbacks to their lane (which only the lane's own object
    /// keeps alive: a collected lane's callbacks do nothing).
    pub fn set_callbacks(&self, callbacks: Weak<dyn NativeCallbacks>, bridge: Arc<Bridge>) {
        *self.callbacks.borrow_mut() = Some(callbacks);
        *self.bridge.borrow_mut() = Arc::downgrade(&bridge);
    }

    /// Whether the queue runs commands: until then, its pending promises do not keep the
    /// process alive (a `Lane` before `start()`).
    pub fn set_started(&self, env: &Env, started: bool) -> napi::Result<()> {
        self.fns.set_started.borrow_back(env)?.call(started)?;
        let was = self.started.replace(started);
        if was != started && self.native_pending.get() > 0 {
            if started {
                self.fns.hold.borrow_back(env)?.call(())?;
            } else {
                self.fns.release.borrow_back(env)?.call(())?;
            }
        }
        Ok(())
    }

    /// A fresh promise token.
    pub fn next_token(&self) -> u64 {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        token
    }

    /// A promise settled later through `token`; pending, it keeps the process alive.
    pub fn promise<'env>(&self, env: &'env Env, token: u64) -> napi::Result<Unknown<'env>> {
        self.fns.promise.borrow_back(env)?.call(token as f64)
    }

    /// Like [`JsRuntime::promise`], but settling it without a JSON result (as
    /// [`Settle::Done`] does) resolves it with `value`: how `RedisQueue.connect` hands
    /// out the queue object once it is connected.
    pub fn value_promise<'env>(
        &self,
        env: &'env Env,
        token: u64,
        value: Unknown<'_>,
    ) -> napi::Result<Unknown<'env>> {
        self.fns
            .value_promise
            .borrow_back(env)?
            .call((token as f64, unknown_static(value)).into())
    }

    /// A submit's promise (`detached`: a handle's result, not reported if never
    /// awaited): like [`JsRuntime::promise`], but made before `start()` it keeps the
    /// process alive only from `start()` on.
    pub fn command_promise<'env>(
        &self,
        env: &'env Env,
        token: u64,
        detached: bool,
    ) -> napi::Result<Unknown<'env>> {
        self.fns
            .command_promise
            .borrow_back(env)?
            .call((token as f64, detached).into())
    }

    /// Like [`JsRuntime::promise`], for a handle's result: not reported if never awaited.
    pub fn detached_promise<'env>(
        &self,
        env: &'env Env,
        token: u64,
    ) -> napi::Result<Unknown<'env>> {
        self.fns
            .detached_promise
            .borrow_back(env)?
            .call(token as f64)
    }

    /// Resolves `token` with the JSON value `json` (`None`: `undefined`); forgets the
    /// failure kept for command `id`.
    pub fn resolve(
        &self,
        env: &Env,
        token: u64,
        json: Option<String>,
        id: Option<CommandId>,
    ) -> napi::Result<()> {
        let id = id.map_or(-1.0, |id| id as f64);
        self.fns
            .resolve
            .borrow_back(env)?
            .call((token as f64, json, id).into())?;
        Ok(())
    }

    /// Resolves `token` with a JavaScript value.
    pub fn resolve_with(&self, env: &Env, token: u64, value: Unknown<'_>) -> napi::Result<()> {
        // SAFETY-free lifetime widening: the value is used within this call only.
        let value = unknown_static(value);
        self.fns
            .resolve_with
            .borrow_back(env)?
            .call((token as f64, value).into())?;
        Ok(())
    }

    /// Rejects `token` with `error`; when `use_failure`, the error the handler of command
    /// `id` threw takes its place (its own message and stack).
    pub fn reject(
        &self,
        env: &Env,
        token: u64,
        id: Option<CommandId>,
        error: Unknown<'_>,
        use_failure: bool,
    ) -> napi::Result<()> {
        let id = id.map_or(-1.0, |id| id as f64);
        let error = unknown_static(error);
        self.fns
            .reject
            .borrow_back(env)?
            .call((token as f64, id, error, use_failure).into())?;
        Ok(())
    }

    /// A promise already rejected with `error`.
    pub fn rejected<'env>(
        &self,
        env: &'env Env,
        error: &impl ToJsError,
    ) -> napi::Result<Unknown<'env>> {
        let token = self.next_token();
        let promise = self.promise(env, token)?;
        self.reject_with(env, token, error)?;
        Ok(promise)
    }

    /// A promise already resolved with the JSON value `json` (`None`: `undefined`).
    pub fn settled<'env>(
        &self,
        env: &'env Env,
        json: Option<String>,
    ) -> napi::Result<Unknown<'env>> {
        let token = self.next_token();
        let promise = self.promise(env, token)?;
        self.resolve(env, token, json, None)?;
        Ok(promise)
    }

    /// Rejects `token` with the JavaScript error `error` maps to.
    pub fn reject_with(&self, env: &Env, token: u64, error: &impl ToJsError) -> napi::Result<()> {
        let js = error.to_js_failure().to_js(env);
        self.reject(env, token, None, js, false)
    }

    /// The handle of command `id` whose result settles through `result_token`;
    /// `duplicate` when the submit's idempotency key was held by it.
    pub fn make_handle<'env>(
        &self,
        env: &'env Env,
        result_token: u64,
        id: CommandId,
        duplicate: bool,
    ) -> napi::Result<Unknown<'env>> {
        self.fns
            .make_handle
            .borrow_back(env)?
            .call((result_token as f64, id as f64, duplicate).into())
    }

    /// One more submitter waits for command `id` (a duplicate of its idempotency key):
    /// it gets the handler's own thrown value too, not only the first submitter.
    pub fn share(&self, env: &Env, id: CommandId) -> napi::Result<()> {
        self.fns.share.borrow_back(env)?.call(id as f64)?;
        Ok(())
    }

    /// Gives the signal watcher of `token` its command id, and cancels the command if the
    /// signal already fired; true in that case.
    pub fn bind(&self, env: &Env, token: u64, id: CommandId) -> napi::Result<bool> {
        self.fns
            .bind
            .borrow_back(env)?
            .call((token as f64, id as f64).into())
    }

    /// Registers the JavaScript handler of `command_type`.
    pub fn handle(&self, env: &Env, command_type: &str, handler: Unknown<'_>) -> napi::Result<()> {
        let handler = unknown_static(handler);
        self.fns
            .handle
            .borrow_back(env)?
            .call((command_type.to_owned(), handler).into())?;
        Ok(())
    }

    /// Registers every handler of a `{ type: handler }` object whose values were checked
    /// to be functions.
    pub fn handle_all(&self, env: &Env, handlers: Unknown<'_>) -> napi::Result<()> {
        self.fns
            .handle_all
            .borrow_back(env)?
            .call(unknown_static(handlers))?;
        Ok(())
    }

    /// The payload as JSON text, or the TypeError to reject with.
    pub fn payload_json<'env>(
        &self,
        env: &'env Env,
        payload: Unknown<'_>,
    ) -> napi::Result<Either<String, Unknown<'env>>> {
        let result = self
            .fns
            .payload_json
            .borrow_back(env)?
            .call(unknown_static(payload))?;
        Ok(match result {
            Either::A(json) => Either::A(json),
            Either::B(error) => Either::B(unknown_static(error)),
        })
    }

    /// Checks a submit's options and watches its signal: `Ok(false)` to go ahead,
    /// `Ok(true)` when the signal already fired, `Err(error)` for invalid options.
    pub fn submit_options<'env>(
        &self,
        env: &'env Env,
        token: u64,
        options: Unknown<'_>,
    ) -> napi::Result<Result<bool, Unknown<'env>>> {
        let result = self
            .fns
            .submit_options
            .borrow_back(env)?
            .call((token as f64, unknown_static(options)).into())?;
        Ok(match result {
            Either::A(code) => Ok(code == 1),
            Either::B(error) => Err(unknown_static(error)),
        })
    }

    /// Adds an event listener.
    pub fn on(&self, env: &Env, key: String, listener: Unknown<'_>) -> napi::Result<()> {
        self.fns
            .on
            .borrow_back(env)?
            .call((key, unknown_static(listener)).into())?;
        Ok(())
    }

    /// Removes an event listener.
    pub fn off(&self, env: &Env, key: String, listener: Unknown<'_>) -> napi::Result<()> {
        self.fns
            .off
            .borrow_back(env)?
            .call((key, unknown_static(listener)).into())?;
        Ok(())
    }

    /// A new async iterator over the events with `keys` (all when `None`); `ended`
    /// makes it one that is already over.
    pub fn iterate<'env>(
        &self,
        env: &'env Env,
        keys: Option<Vec<String>>,
        capacity: u32,
        ended: bool,
    ) -> napi::Result<Unknown<'env>> {
        self.fns
            .iterate
            .borrow_back(env)?
            .call((keys, capacity, ended).into())
    }

    /// Settles `token` now, on the JavaScript thread (as a [`Mail::Settle`] would).
    pub fn settle_now(&self, env: &Env, token: u64, settle: Settle) -> napi::Result<()> {
        self.settle(env, token, settle)
    }

    /// Handles one message from a tokio task.
    pub fn deliver(&self, env: &Env, mail: Mail) {
        let result = match mail {
            Mail::Run(request) => self.run(env, request),
            Mail::Abort {
                key,
                code,
                message,
                forget,
            } => {
                if forget {
                    self.runs.borrow_mut().remove(&key);
                }
                self.fns
                    .abort
                    .borrow_back(env)
                    .and_then(|abort| abort.call((key as f64, code, message, forget).into()))
                    .map(drop)
            }
            // Events first: whatever the queue emitted before a command finished (its
            // `completed` event, say) reaches the listeners before its promise settles.
            Mail::Settle { token, settle } => self
                .pump_events(env)
                .and_then(|()| self.settle(env, token, settle)),
            Mail::Completed { token } => self
                .pump_events(env)
                .and_then(|()| self.poll_result(env, token)),
            Mail::Hold => self
                .fns
                .hold
                .borrow_back(env)
                .and_then(|hold| hold.call(()))
                .map(drop),
            Mail::Release => self
                .fns
                .release
                .borrow_back(env)
                .and_then(|release| release.call(()))
                .map(drop),
            Mail::EventsReady => self.pump_events(env),
            Mail::Poll(task) => {
                task.poll();
                Ok(())
            }
            Mail::Subscribe(stream) => {
                if self.events_wanted.get() && self.events.borrow().is_none() {
                    *self.events.borrow_mut() = Some(stream);
                    self.pump_events(env)
                } else {
                    Ok(())
                }
            }
        };
        if let Err(error) = result {
            // Only a broken runtime.js or a dying environment gets here; nothing can be
            // settled any more, so say so instead of failing silently.
            eprintln!("@a3s-lab/lane: internal error on the JavaScript thread: {error}");
        }
    }

    /// Starts or stops reading events; `subscribe` makes the subscription when the
    /// queue exists (otherwise [`Mail::Subscribe`] brings it later).
    pub fn set_events_wanted(
        &self,
        env: &Env,
        wanted: bool,
        subscribe: impl FnOnce() -> Option<EventStream>,
    ) {
        self.events_wanted.set(wanted);
        if !wanted {
            self.events.borrow_mut().take();
            return;
        }
        if self.events.borrow().is_none()
            && let Some(stream) = subscribe()
        {
            *self.events.borrow_mut() = Some(stream);
            if let Err(error) = self.pump_events(env) {
                eprintln!("@a3s-lab/lane: internal error on the JavaScript thread: {error}");
            }
        }
    }

    /// Hands every event waiting in the subscription to `runtime.js`, in one batch.
    ///
    /// The subscription is polled here, on the JavaScript thread, with a waker that
    /// mails [`Mail::EventsReady`]; a reader that cannot keep up leaves the events in the
    /// queue's bounded buffer and is told how many it missed (`queue.events.lagged`).
    fn pump_events(&self, env: &Env) -> napi::Result<()> {
        let mut batch = Vec::new();
        {
            let mut slot = self.events.borrow_mut();
            let Some(stream) = slot.as_mut() else {
                return Ok(());
            };
            let Some(bridge) = self.bridge.borrow().upgrade() else {
                return Ok(());
            };
            let waker = Waker::from(Arc::new(EventsWaker { bridge }));
            let mut cx = Context::from_waker(&waker);
            loop {
                match Pin::new(&mut *stream).poll_next(&mut cx) {
                    Poll::Ready(Some(event)) => batch.push(crate::events::to_js_shape(event)),
                    Poll::Ready(None) => {
                        slot.take();
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        // No borrow is held: listeners may add or remove listeners.
        let json = Value::Array(batch).to_string();
        self.fns.emit.borrow_back(env)?.call(json)?;
        Ok(())
    }

    /// Settles `token` with the result of `handle` once the command finishes.
    ///
    /// The handle is polled here, on the JavaScript thread, with a waker that mails
    /// [`Mail::Completed`]: the core's reply itself wakes the JavaScript thread, with no
    /// task per command and no hop through another tokio thread.
    pub fn await_result(
        &self,
        env: &Env,
        token: u64,
        handle: CoreHandle,
        bridge: Arc<Bridge>,
    ) -> napi::Result<()> {
        let waker = Waker::from(Arc::new(CompletionWaker { token, bridge }));
        self.awaited.borrow_mut().insert(
            token,
            Awaited {
                handle,
                deferred: std::ptr::null_mut(),
            },
        );
        self.poll_with(env, token, &waker)
    }

    /// A promise of the result of `handle`, made and settled here in Rust (no promise
    /// token of `runtime.js`): how a `submit` without options returns. Rejections carry
    /// the handler's own thrown value, as through a token.
    pub fn await_promise<'env>(
        &self,
        env: &'env Env,
        handle: CoreHandle,
        bridge: Arc<Bridge>,
    ) -> napi::Result<Unknown<'env>> {
        let token = self.next_token();
        let mut deferred = std::ptr::null_mut();
        let mut promise = std::ptr::null_mut();
        // SAFETY: a plain Node-API call on the JavaScript thread with its env.
        napi::check_status!(unsafe {
            sys::napi_create_promise(env.raw(), &mut deferred, &mut promise)
        })?;
        let pending = self.native_pending.get();
        self.native_pending.set(pending + 1);
        if pending == 0 && self.started.get() {
            self.fns.hold.borrow_back(env)?.call(())?;
        }
        let waker = Waker::from(Arc::new(CompletionWaker { token, bridge }));
        self.awaited
            .borrow_mut()
            .insert(token, Awaited { handle, deferred });
        self.poll_with(env, token, &waker)?;
        // SAFETY: `promise` was just made in `env`, in the current callback scope.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
    }

    /// Settles a promise of [`JsRuntime::await_promise`] with the result of command `id`.
    fn settle_deferred(
        &self,
        env: &Env,
        deferred: sys::napi_deferred,
        id: CommandId,
        result: a3s_lane::Result<Value>,
    ) -> napi::Result<()> {
        let pending = self.native_pending.get() - 1;
        self.native_pending.set(pending);
        if pending == 0 && self.started.get() {
            self.fns.release.borrow_back(env)?.call(())?;
        }
        let raw = env.raw();
        match result {
            Ok(value) => {
                if self.failures_maybe.get() {
                    let id = (id as f64).into_raw(raw)?;
                    let left = call_raw(env, &self.fns.forget, &[id])?;
                    // SAFETY: `left` is a value of this scope.
                    let left = unsafe {
                        <f64 as napi::bindgen_prelude::FromNapiValue>::from_napi_value(raw, left)
                    }?;
                    self.failures_maybe.set(left > 0.0);
                }
                let value = self.json_to_js(env, &value)?;
                // SAFETY: `deferred` is settled once: it left `awaited` for good.
                napi::check_status!(unsafe { sys::napi_resolve_deferred(raw, deferred, value) })
            }
            Err(error) => {
                let js = error.to_js_failure().to_js(env).raw();
                let args = [
                    (id as f64).into_raw(raw)?,
                    js,
                    is_handler_failure(&error).into_raw(raw)?,
                ];
                let reason = call_raw(env, &self.fns.reason, &args)?;
                // SAFETY: as above.
                napi::check_status!(unsafe { sys::napi_reject_deferred(raw, deferred, reason) })
            }
        }
    }

    /// A JSON value as a JavaScript value: a primitive or a string made directly, an
    /// array or object through `JSON.parse` (so `__proto__` is a plain key).
    fn json_to_js(&self, env: &Env, value: &Value) -> napi::Result<sys::napi_value> {
        let raw = env.raw();
        match primitive_to_js(raw, value)? {
            Some(js) => Ok(js),
            None => {
                let json = serde_json::to_string(value)
                    .map_err(|error| napi::Error::new(Status::GenericFailure, error.to_string()))?;
                let json = json.as_str().into_raw(raw)?;
                call_raw(env, &self.fns.parse, &[json])
            }
        }
    }

    fn poll_result(&self, env: &Env, token: u64) -> napi::Result<()> {
        let Some(bridge) = self.bridge.borrow().upgrade() else {
            return Ok(());
        };
        let waker = Waker::from(Arc::new(CompletionWaker { token, bridge }));
        self.poll_with(env, token, &waker)
    }

    fn poll_with(&self, env: &Env, token: u64, waker: &Waker) -> napi::Result<()> {
        let Some(mut awaited) = self.awaited.borrow_mut().remove(&token) else {
            return Ok(()); // already settled (a repeated wake)
        };
        let id = awaited.handle.id();
        match Pin::new(&mut awaited.handle).poll(&mut Context::from_waker(waker)) {
            Poll::Pending => {
                self.awaited.borrow_mut().insert(token, awaited);
                Ok(())
            }
            Poll::Ready(result) if !awaited.deferred.is_null() => {
                self.settle_deferred(env, awaited.deferred, id, result)
            }
            Poll::Ready(result) => {
                let result =
                    result.and_then(|value| serde_json::to_string(&value).map_err(LaneError::from));
                self.settle(env, token, Settle::Result { id, result })
            }
        }
    }

    fn run(&self, env: &Env, request: RunRequest) -> napi::Result<()> {
        let RunRequest {
            key,
            command_type,
            payload,
            ctx,
            record_failure,
            reply,
        } = request;
        let raw = env.raw();
        let lane = ctx.lane().into_raw(raw);
        let (id, attempt) = (ctx.id(), ctx.attempt());
        self.runs.borrow_mut().insert(key, RunSlot { reply, ctx });
        // The payload itself when JavaScript can have it directly, else its JSON text.
        let payload = match primitive_to_js(raw, &payload) {
            Ok(Some(js)) => Ok((js, false)),
            Ok(None) => payload
                .to_string()
                .as_str()
                .into_raw(raw)
                .map(|json| (json, true)),
            Err(error) => Err(error),
        };
        // No borrow is held here: the handler may submit, cancel or settle synchronously.
        let outcome = (|| {
            let (payload, is_json) = payload?;
            let args = [
                (&*command_type).into_raw(raw)?,
                payload,
                is_json.into_raw(raw)?,
                (id as f64).into_raw(raw)?,
                lane?,
                attempt.into_raw(raw)?,
                (key as f64).into_raw(raw)?,
                record_failure.into_raw(raw)?,
            ];
            call_raw(env, &self.fns.run, &args)
        })();
        if let Err(error) = outcome {
            let slot = self.runs.borrow_mut().remove(&key);
            if let Some(slot) = slot {
                let _ = slot.reply.send(JsOutcome::Threw {
                    summary: format!("the JavaScript handler could not be called: {error}"),
                    retryable: false,
                });
            }
        }
        Ok(())
    }

    fn settle(&self, env: &Env, token: u64, settle: Settle) -> napi::Result<()> {
        match settle {
            Settle::Result { id, result } => match result {
                Ok(json) => self.resolve(env, token, Some(json), Some(id)),
                Err(error) => {
                    let js = error.to_js_failure().to_js(env);
                    self.reject(env, token, Some(id), js, is_handler_failure(&error))
                }
            },
            Settle::Accepted {
                id,
                result_token,
                duplicate,
            } => {
                if duplicate {
                    self.share(env, id)?;
                }
                // A signal that fired while the command was being accepted cancels it now.
                self.bind(env, result_token.unwrap_or(token), id)?;
                if let Some(result_token) = result_token {
                    let handle = self.make_handle(env, result_token, id, duplicate)?;
                    self.resolve_with(env, token, handle)?;
                }
                Ok(())
            }
            Settle::Failed(error) => self.reject_with(env, token, &error),
            Settle::Rejected(failure) => self.reject_with(env, token, &failure),
            Settle::Done => self.resolve(env, token, None, None),
            Settle::Count(count) => self.resolve(env, token, Some(count.to_string()), None),
            Settle::Value(value) => {
                let value = value.into_js(env)?;
                self.resolve_with(env, token, value)
            }
        }
    }
}

/// Widens an `Unknown`'s lifetime so it can be passed to a stored `FunctionRef`, whose
/// argument types cannot name the caller's scope.
#[allow(unsafe_code)]
pub(crate) fn unknown_static(value: Unknown<'_>) -> Unknown<'static> {
    // SAFETY: the same env and value handle; every caller passes the result straight to
    // a JavaScript call (or returns it to JavaScript) inside the callback scope the
    // original value belongs to, so the handle is never used after that scope closes.
    unsafe { Unknown::from_raw_unchecked(value.value().env, value.raw()) }
}

/// A command's result awaited on the JavaScript thread, and how it settles: through
/// its promise token (`deferred` is null), or the deferred of a promise made in Rust.
struct Awaited {
    handle: CoreHandle,
    deferred: sys::napi_deferred,
}

/// Makes a JavaScript value of `value` (a thin wrapper of [`ToNapiValue`]).
trait IntoRaw {
    fn into_raw(self, env: sys::napi_env) -> napi::Result<sys::napi_value>;
}

impl<T: ToNapiValue> IntoRaw for T {
    fn into_raw(self, env: sys::napi_env) -> napi::Result<sys::napi_value> {
        // SAFETY: every caller passes the env of the JavaScript thread it runs on.
        unsafe { T::to_napi_value(env, self) }
    }
}

/// Calls `function` (with `undefined` as `this`) with `args` made by the caller:
/// unlike `Function::call`, no allocation.
fn call_raw<A: napi::bindgen_prelude::JsValuesTupleIntoVec, R>(
    env: &Env,
    function: &FunctionRef<A, R>,
    args: &[sys::napi_value],
) -> napi::Result<sys::napi_value> {
    let function = function.borrow_back(env)?;
    let raw = env.raw();
    let mut this = std::ptr::null_mut();
    let mut result = std::ptr::null_mut();
    // SAFETY: Node-API calls on the JavaScript thread with values of this scope.
    unsafe {
        napi::check_status!(sys::napi_get_undefined(raw, &mut this))?;
        let status = sys::napi_call_function(
            raw,
            this,
            function.raw(),
            args.len(),
            args.as_ptr(),
            &mut result,
        );
        if status != sys::Status::napi_ok {
            // runtime.js catches what handlers throw: only a broken runtime gets here.
            let mut exception = std::ptr::null_mut();
            sys::napi_get_and_clear_last_exception(raw, &mut exception);
            return Err(napi::Error::new(
                Status::from(status),
                "a call into runtime.js failed",
            ));
        }
    }
    Ok(result)
}

/// A JSON primitive (`null`, a boolean, a number) or a string as a JavaScript value;
/// `None` for an array or an object.
fn primitive_to_js(env: sys::napi_env, value: &Value) -> napi::Result<Option<sys::napi_value>> {
    Ok(Some(match value {
        Value::Null => napi::bindgen_prelude::Null.into_raw(env)?,
        Value::Bool(b) => b.into_raw(env)?,
        // As JSON.parse reads the number's text: the nearest double.
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN).into_raw(env)?,
        Value::String(text) => text.as_str().into_raw(env)?,
        Value::Array(_) | Value::Object(_) => return Ok(None),
    }))
}

/// What `native.settleRun` of `runtime.js` acts on.
struct SettleRunData {
    runs: Weak<RefCell<HashMap<u64, RunSlot>>>,
    failures_maybe: Rc<Cell<bool>>,
}

/// `native.settleRun(key, ok, json, summary, retryable)`: a plain Node-API callback,
/// called once per attempt (no allocation but the texts it gets).
fn settle_run_function(
    env: &Env,
    runs: Weak<RefCell<HashMap<u64, RunSlot>>>,
    failures_maybe: Rc<Cell<bool>>,
) -> napi::Result<Unknown<'static>> {
    unsafe extern "C" fn callback(
        env: sys::napi_env,
        info: sys::napi_callback_info,
    ) -> sys::napi_value {
        use napi::bindgen_prelude::FromNapiValue;
        let mut argc = 5;
        let mut argv = [std::ptr::null_mut(); 5];
        let mut data = std::ptr::null_mut();
        // SAFETY: called by Node with this callback's info; argv has room for argc
        // values (missing ones are `undefined`); `data` is the `SettleRunData` boxed
        // below, alive until the function is collected.
        unsafe {
            if sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                std::ptr::null_mut(),
                &mut data,
            ) != sys::Status::napi_ok
            {
                return std::ptr::null_mut();
            }
            let data = &*(data as *const SettleRunData);
            let (Ok(key), Ok(ok)) = (
                f64::from_napi_value(env, argv[0]),
                bool::from_napi_value(env, argv[1]),
            ) else {
                return std::ptr::null_mut();
            };
            if !ok {
                data.failures_maybe.set(true);
            }
            let json = Option::<String>::from_napi_value(env, argv[2]).unwrap_or_default();
            let summary = Option::<String>::from_napi_value(env, argv[3]).unwrap_or_default();
            let retryable = bool::from_napi_value(env, argv[4]).unwrap_or(true);
            settle_run(&data.runs, key as u64, ok, json, summary, retryable);
        }
        std::ptr::null_mut()
    }
    unsafe extern "C" fn finalize(
        _env: sys::napi_env,
        data: *mut std::ffi::c_void,
        _hint: *mut std::ffi::c_void,
    ) {
        // SAFETY: `data` is the box made below, finalized once.
        drop(unsafe { Box::from_raw(data as *mut SettleRunData) });
    }
    let raw = env.raw();
    let data = Box::into_raw(Box::new(SettleRunData {
        runs,
        failures_maybe,
    }));
    let name = "settleRun";
    let mut function = std::ptr::null_mut();
    // SAFETY: Node-API calls on the JavaScript thread; `data` outlives the function
    // (freed by its finalizer).
    unsafe {
        napi::check_status!(sys::napi_create_function(
            raw,
            name.as_ptr().cast(),
            name.len() as isize,
            Some(callback),
            data.cast(),
            &mut function,
        ))?;
        napi::check_status!(sys::napi_add_finalizer(
            raw,
            function,
            data.cast(),
            Some(finalize),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ))?;
        Ok(Unknown::from_raw_unchecked(raw, function))
    }
}

fn settle_run(
    runs: &Weak<RefCell<HashMap<u64, RunSlot>>>,
    key: u64,
    ok: bool,
    json: Option<String>,
    summary: Option<String>,
    retryable: bool,
) {
    let Some(runs) = runs.upgrade() else {
        return;
    };
    let Some(slot) = runs.borrow_mut().remove(&key) else {
        return; // abandoned: timed out, or dropped after its cancel grace
    };
    let outcome = if ok {
        JsOutcome::Returned(json)
    } else {
        JsOutcome::Threw {
            summary: summary.unwrap_or_else(|| "the handler failed".into()),
            retryable,
        }
    };
    let _ = slot.reply.send(outcome);
}

/// Wakes the JavaScript thread to read the event subscription.
struct EventsWaker {
    bridge: Arc<Bridge>,
}

impl Wake for EventsWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.bridge.mailbox.send(Mail::EventsReady);
    }
}

/// Wakes the JavaScript thread to poll an awaited result again.
struct CompletionWaker {
    token: u64,
    bridge: Arc<Bridge>,
}

impl Wake for CompletionWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.bridge
            .mailbox
            .send(Mail::Completed { token: self.token });
    }
}

type Doorbell = ThreadsafeFunction<(), (), (), Status, false, true, 0>;

/// The most messages handled per wake-up of the JavaScript thread; the rest follow in
/// the next turn of the event loop, so timers and I/O are not starved.
const MAX_MAILS_PER_TURN: usize = 1024;

/// Hands [`Mail`] to the JavaScript thread of one `Lane`. Cheap to share.
///
/// Messages go into one queue; the threadsafe function is only a doorbell, rung when
/// the queue turns non-empty. A busy lane therefore pays one wake-up of the JavaScript
/// thread (and one pass through Node's threadsafe-function machinery) for a whole batch
/// of messages, not one per message.
#[derive(Clone)]
pub struct Mailbox {
    inner: Arc<MailboxInner>,
}

struct MailboxInner {
    /// The JavaScript thread.
    js_thread: std::thread::ThreadId,
    queue: parking_lot::Mutex<VecDeque<Mail>>,
    doorbell: OnceLock<Doorbell>,
    /// Set when the JavaScript environment refused a wake-up (it is shutting down).
    closed: AtomicBool,
}

impl MailboxInner {
    /// Wakes the JavaScript thread; on failure, drops what is queued (its senders learn
    /// that nothing will answer) and refuses further mail.
    fn ring(&self) {
        let rung = self.doorbell.get().is_some_and(|doorbell| {
            doorbell.call((), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
        });
        if !rung {
            self.closed.store(true, Ordering::Release);
            let dropped = std::mem::take(&mut *self.queue.lock());
            drop(dropped);
        }
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("queued", &self.inner.queue.lock().len())
            .finish()
    }
}

impl Mailbox {
    /// A mailbox whose messages `runtime` handles.
    pub fn create(env: &Env, runtime: Rc<JsRuntime>) -> napi::Result<Self> {
        let inner = Arc::new(MailboxInner {
            js_thread: std::thread::current().id(),
            queue: parking_lot::Mutex::new(VecDeque::new()),
            doorbell: OnceLock::new(),
            closed: AtomicBool::new(false),
        });
        // The threadsafe function calls a no-op after each ring; the work happens in the
        // callback below, which has the env and the runtime at hand. It holds the
        // mailbox weakly: the mailbox owns the threadsafe function.
        let weak = Arc::downgrade(&inner);
        let spare: Cell<VecDeque<Mail>> = Cell::default();
        let noop = env.create_function_from_closure::<(), _, _>("laneMailbox", |_| Ok(()))?;
        let doorbell = noop
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |ctx| {
                let Some(inner) = weak.upgrade() else {
                    return Ok(());
                };
                // Mail sent while delivering (a runner polled here mails its handler's
                // run) is delivered in the same turn, up to the bound.
                // Mail is taken by swapping the queue with `batch` (both keep their
                // capacity: no allocation per turn), delivered with no lock held.
                let mut batch = spare.take();
                let mut left = MAX_MAILS_PER_TURN;
                while left > 0 {
                    {
                        let mut queue = inner.queue.lock();
                        if queue.len() <= left {
                            std::mem::swap(&mut *queue, &mut batch);
                        } else {
                            batch.extend(queue.drain(..left));
                        }
                    }
                    if batch.is_empty() {
                        break;
                    }
                    left -= batch.len();
                    for mail in batch.drain(..) {
                        runtime.deliver(&ctx.env, mail);
                    }
                }
                spare.set(batch);
                if !inner.queue.lock().is_empty() {
                    inner.ring();
                }
                Ok(())
            })?;
        let _ = inner.doorbell.set(doorbell);
        Ok(Self { inner })
    }

    /// Whether this is the JavaScript thread of the mailbox.
    pub fn is_js_thread(&self) -> bool {
        std::thread::current().id() == self.inner.js_thread
    }

    /// Queues `mail`; false when the JavaScript environment is gone.
    pub fn send(&self, mail: Mail) -> bool {
        if self.inner.closed.load(Ordering::Acquire) {
            return false;
        }
        let first = {
            let mut queue = self.inner.queue.lock();
            queue.push_back(mail);
            queue.len() == 1
        };
        if first {
            self.inner.ring();
        }
        !self.inner.closed.load(Ordering::Acquire)
    }
}

/// What every [`JsHandler`] of a lane shares.
#[derive(Debug)]
pub struct Bridge {
    /// The lane's mailbox.
    pub mailbox: Mailbox,
    /// Commands with an id up to this one were recovered from storage: nobody in this
    /// process awaits them, so their handlers' errors are not kept for a submitter.
    pub recovered_up_to: AtomicU64,
    /// Each lane's timeout, to name it when a handler is abandoned.
    pub timeouts: LaneTimeouts,
    next_run: AtomicU64,
}

/// Each lane's timeout by lane id, as far as this process knows it: a `Lane`'s from its
/// options; a `RedisQueue`'s from the lanes it declared, shared with the workers started
/// on it (a lane declared by another process is not in it: its timeout is not named).
pub type LaneTimeouts = Arc<RwLock<HashMap<String, Duration>>>;

impl Bridge {
    /// A bridge over `mailbox`.
    pub fn new(mailbox: Mailbox, timeouts: LaneTimeouts) -> Self {
        Self {
            mailbox,
            recovered_up_to: AtomicU64::new(0),
            timeouts,
            next_run: AtomicU64::new(1),
        }
    }

    /// Settles the promise of `token` (from a tokio task).
    pub fn settle(&self, token: u64, settle: Settle) {
        self.mailbox.send(Mail::Settle { token, settle });
    }

    /// Settles `token` with the result of command `id` once `result` has it.
    pub async fn settle_result(
        &self,
        token: u64,
        id: CommandId,
        result: impl Future<Output = a3s_lane::Result<Value>>,
    ) {
        let result = result
            .await
            .and_then(|value| serde_json::to_string(&value).map_err(LaneError::from));
        self.settle(token, Settle::Result { id, result });
    }
}

/// Runs commands of one type with their JavaScript handler.
#[derive(Debug, Clone)]
pub struct JsHandler {
    command_type: Arc<str>,
    bridge: Arc<Bridge>,
}

impl JsHandler {
    /// The handler of `command_type`.
    pub fn new(command_type: &str, bridge: Arc<Bridge>) -> Self {
        Self {
            command_type: Arc::from(command_type),
            bridge,
        }
    }
}

/// Abandons the JavaScript run when the queue drops it (timeout or end of the cancel grace).
struct RunGuard<'a> {
    bridge: &'a Bridge,
    key: u64,
    ctx: &'a CommandContext,
    settled: bool,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (code, message) = if self.ctx.is_cancelled() {
            (
                "CANCELLED",
                format!(
                    "command {} was cancelled and did not stop within its lane's cancel grace",
                    self.ctx.id()
                ),
            )
        } else {
            let after = self
                .bridge
                .timeouts
                .read()
                .get(self.ctx.lane())
                .map(|d| format!(" after {d:?}"))
                .unwrap_or_default();
            (
                "TIMEOUT",
                format!("command {} timed out{after}", self.ctx.id()),
            )
        };
        self.bridge.mailbox.send(Mail::Abort {
            key: self.key,
            code,
            message,
            forget: true,
        });
    }
}

#[async_trait]
impl Handler for JsHandler {
    /// A JavaScript promise goes on when its Rust future is dropped: the queue keeps the
    /// lane slot until the handler really returns, so `maxConcurrency` holds.
    fn stops_when_dropped(&self) -> bool {
        false
    }

    async fn handle(&self, payload: Value, ctx: CommandContext) -> a3s_lane::Result<Value> {
        let bridge = &*self.bridge;
        let started = std::time::Instant::now();
        let key = bridge.next_run.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        let record_failure = ctx.id() > bridge.recovered_up_to.load(Ordering::Relaxed);
        let request = RunRequest {
            key,
            command_type: self.command_type.clone(),
            payload,
            ctx: ctx.clone(),
            record_failure,
            reply,
        };
        if !bridge.mailbox.send(Mail::Run(request)) {
            return Err(LaneError::Other(
                "the JavaScript environment of this lane is gone; the handler cannot run".into(),
            ));
        }
        let mut guard = RunGuard {
            bridge,
            key,
            ctx: &ctx,
            settled: false,
        };
        let outcome = tokio::select! {
            biased;
            outcome = &mut answer => outcome,
            () = ctx.cancelled() => {
                // The queue asks a timed-out run to stop through the same signal.
                let timeout = bridge.timeouts.read().get(ctx.lane()).copied();
                let (code, message) = match timeout {
                    Some(limit) if started.elapsed() >= limit => (
                        "TIMEOUT",
                        format!("command {} timed out after {limit:?}", ctx.id()),
                    ),
                    _ => ("CANCELLED", format!("command {} was cancelled", ctx.id())),
                };
                bridge.mailbox.send(Mail::Abort {
                    key,
                    code,
                    message,
                    forget: false,
                });
                answer.await
            }
        };
        guard.settled = true;
        match outcome {
            Ok(JsOutcome::Returned(Some(json))) => Ok(serde_json::from_str(&json)?),
            Ok(JsOutcome::Returned(None)) => Ok(Value::Null),
            Ok(JsOutcome::Threw { summary, retryable }) => Err(if retryable {
                LaneError::CommandError(summary)
            } else {
                LaneError::NonRetryable(summary)
            }),
            Err(_) => Err(LaneError::Other(
                "the JavaScript environment dropped the handler's run".into(),
            )),
        }
    }
}
