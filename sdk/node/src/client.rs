//! The client surface: what `Lane` (in process) and `RedisQueue` both offer, written once
//! over the core's `a3s_lane::QueueClient` — cancel a command, read its state (and its
//! result, once finished), list a lane's commands by state, read the stats, pause and
//! resume lanes, pause, resume, cancel and read the groups inside a lane, list, redrive
//! and purge dead letters, put, list, pause, resume and remove recurring schedules,
//! listen to events.
//!
//! Each class holds a `Client` (over its engine, a `ClientSource`) and gets its
//! `#[napi]` methods of these names from `client_methods!`, so each is the same method
//! with the same signature, documentation and results on either engine. Only `stats()`
//! is written per class: a `RedisQueue`'s reports its workers and counters too.
//!
//! Every operation returns a promise. Its future is polled once at once, on the
//! JavaScript thread: the in-process queue answers there (so a pause or a cancel takes
//! effect in call order, and the promise is settled before the call returns); what has to
//! wait (a reply from Redis, a durable lane opening its store) goes on on a tokio task and
//! settles through the mailbox.

use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use a3s_lane::{CommandId, CommandState, LaneError, Page, QueueClient, SubmittedCommand};
use async_trait::async_trait;
use napi::Env;
use napi::bindgen_prelude::{ToNapiValue, Unknown};

use crate::convert::{At, Given, Js, MAX_SAFE_INTEGER, command_id, function, options_object};
use crate::error::{JsFailure, argument_failure};
use crate::events::{EventKeys, check_key};
use crate::lane::submit::payload_value;
use crate::runtime::{Bridge, JsRuntime, NativeCallbacks, Settle, in_runtime, spawn};
use crate::schedule::{ScheduleInfo, ScheduleOptions, schedule_name};
use crate::stats::{CommandStatus, DeadLetter, GroupStatus, QueueStats, count, outcome_name};

/// Which page of a listing `listCommands` (and `groups`) returns (`{ offset: 100, limit: 100 }`).
#[napi_derive::napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct ListCommandsOptions {
    /// How many entries (commands, groups) of the listing to skip first (default 0).
    #[napi(ts_type = "number")]
    pub offset: Option<Js<f64>>,
    /// The most entries returned, 1 to 1000 (default 100).
    #[napi(ts_type = "number")]
    pub limit: Option<Js<f64>>,
}

options_object!(
    ListCommandsOptions,
    "an object like { offset: 0, limit: 100 }",
    ["offset", "limit"]
);

impl ListCommandsOptions {
    /// The page, checked by the core's rule (`Page::validate`: a limit of 1 to 1000).
    fn into_page(self) -> Result<Page, JsFailure> {
        let at = At::argument("options");
        let whole = |at: &At<'static>, n: f64| {
            at.whole(n, MAX_SAFE_INTEGER)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let mut page = Page::default();
        if let Some(offset) = at.field("offset", self.offset, whole)? {
            page.offset = offset;
        }
        if let Some(limit) = at.field("limit", self.limit, whole)? {
            page.limit = limit;
        }
        page.validate().map_err(|error| match error {
            LaneError::InvalidInput(reason) => at
                .key("limit")
                .range_error(format!("options.limit: {reason}")),
            error => error.into(),
        })?;
        Ok(page)
    }
}

/// Where a [`Client`] finds its engine's `QueueClient`: a `Lane`'s `QueueManager` (which
/// a durable lane builds only once `start()` has opened its store) or a `RedisQueue`.
#[async_trait]
pub(crate) trait ClientSource: Send + Sync + 'static {
    /// The client, if it exists now.
    fn now(&self) -> Option<Arc<dyn QueueClient>>;

    /// The client, waiting while a durable lane opens its store; or why there is none
    /// (the lane was shut down, or never started).
    async fn client(&self) -> Result<Arc<dyn QueueClient>, JsFailure>;

    /// The client to wait on for the backlog to shrink (waiting, unlike `client()`,
    /// while a durable lane is still to start), or `None` when no command will wait any
    /// more (a lane that was shut down): such a wait is over at once.
    async fn backlog_client(&self) -> Result<Option<Arc<dyn QueueClient>>, JsFailure> {
        self.client().await.map(Some)
    }

    /// Records whether someone listens to events (a durable lane subscribes its queue
    /// when it builds it).
    fn set_events_wanted(&self, wanted: bool) {
        let _ = wanted;
    }

    /// How many events an iterator buffers before it loses the oldest.
    fn event_capacity(&self) -> u32;

    /// Whether no event will come any more (a lane that was shut down).
    fn events_over(&self) -> bool {
        false
    }

    /// Commands accepted here and not finished (0 where the engine keeps them elsewhere,
    /// as Redis does).
    fn unfinished(&self) -> usize {
        0
    }

    /// What the queue records (a `Lane` with `{ metrics: true }`), for its dashboard.
    fn metrics(&self) -> Option<a3s_lane::QueueMetrics> {
        None
    }
}

/// The operations of the client surface, over one engine, as JavaScript calls them.
pub(crate) struct Client {
    runtime: Rc<JsRuntime>,
    bridge: Arc<Bridge>,
    source: Arc<dyn ClientSource>,
    /// The dashboards served for the queue (`serveDashboard`), closed with it.
    dashboards: crate::dashboard::Dashboards,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// Polls `work` once, here (in the addon's tokio context, for engines that spawn).
fn poll_here<F: Future + ?Sized>(work: Pin<&mut F>) -> Poll<F::Output> {
    in_runtime(|| work.poll(&mut Context::from_waker(Waker::noop())))
}

impl Client {
    /// The client of `source`, answering the callbacks of `runtime` (a handle's
    /// `cancel()`, an `AbortSignal`, listeners coming and going) for as long as the
    /// returned `Rc` lives: the JavaScript object of its queue holds it.
    pub(crate) fn new(
        runtime: Rc<JsRuntime>,
        bridge: Arc<Bridge>,
        source: Arc<dyn ClientSource>,
    ) -> Rc<Self> {
        let client = Rc::new(Self {
            runtime,
            bridge,
            source,
            dashboards: crate::dashboard::Dashboards::default(),
        });
        let callbacks: Rc<dyn NativeCallbacks> = client.clone();
        let weak: Weak<dyn NativeCallbacks> = Rc::downgrade(&callbacks);
        client.runtime.set_callbacks(weak, client.bridge.clone());
        client
    }

    /// The JavaScript half of the queue.
    pub(crate) fn runtime(&self) -> &JsRuntime {
        &self.runtime
    }

    /// Stops the dashboards served for the queue now (at its shutdown); the future
    /// resolves once they are gone.
    pub(crate) fn close_dashboards(&self) -> impl Future<Output = ()> + Send + 'static {
        self.dashboards.close_all()
    }

    /// A new promise settled with what `work` gives.
    pub(crate) fn run<'env, T>(
        &self,
        env: &'env Env,
        work: impl Future<Output = Result<T, JsFailure>> + Send + 'static,
    ) -> napi::Result<Unknown<'env>>
    where
        T: ToNapiValue + Send + 'static,
    {
        let rt = &self.runtime;
        let token = rt.next_token();
        let promise = rt.promise(env, token)?;
        let mut work = Box::pin(work);
        match poll_here(work.as_mut()) {
            Poll::Ready(outcome) => rt.settle_now(env, token, Settle::of(outcome))?,
            Poll::Pending => {
                let bridge = self.bridge.clone();
                spawn(async move { bridge.settle(token, Settle::of(work.await)) });
            }
        }
        Ok(promise)
    }

    /// A new promise settled with what `op` does with the engine's client and `args`
    /// (the checked arguments; rejected at once when they are not valid).
    fn call<'env, A, T, E, F, Fut>(
        &self,
        env: &'env Env,
        args: Result<A, JsFailure>,
        op: F,
    ) -> napi::Result<Unknown<'env>>
    where
        A: Send + 'static,
        T: ToNapiValue + Send + 'static,
        E: Into<JsFailure>,
        F: FnOnce(Arc<dyn QueueClient>, A) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let args = match args {
            Ok(args) => args,
            Err(failure) => return self.runtime.rejected(env, &failure),
        };
        let source = self.source.clone();
        self.run(env, async move {
            let client = source.client().await?;
            op(client, args).await.map_err(Into::into)
        })
    }

    /// Cancels a command; a promise of the outcome.
    fn cancel_id<'env>(
        &self,
        env: &'env Env,
        id: Result<CommandId, JsFailure>,
    ) -> napi::Result<Unknown<'env>> {
        self.call(env, id, |client, id| async move {
            client.cancel(id).await.map(outcome_name)
        })
    }

    /// Hands out the handle of the command `work` submits: resolves the promise of
    /// `returned` with it once the queue accepted the command, and the handle's result
    /// promise (of `result`) with the command's result. The first poll happens here, so
    /// commands reach their queue in call order.
    pub(crate) fn hand_out(
        &self,
        env: &Env,
        returned: u64,
        result: u64,
        work: impl Future<Output = Result<SubmittedCommand, JsFailure>> + Send + 'static,
    ) -> napi::Result<()> {
        let mut work = Box::pin(work);
        let first = poll_here(work.as_mut());
        if let Poll::Ready(Ok(submitted)) = first {
            let id = submitted.id();
            let accepted = Settle::Accepted {
                id,
                result_token: Some(result),
                duplicate: submitted.is_duplicate(),
            };
            self.runtime.settle_now(env, returned, accepted)?;
            let bridge = self.bridge.clone();
            spawn(async move { bridge.settle_result(result, id, submitted).await });
            return Ok(());
        }
        let bridge = self.bridge.clone();
        spawn(async move {
            let accepted = match first {
                Poll::Ready(accepted) => accepted,
                Poll::Pending => work.await,
            };
            match accepted {
                Ok(submitted) => {
                    let id = submitted.id();
                    let accepted = Settle::Accepted {
                        id,
                        result_token: Some(result),
                        duplicate: submitted.is_duplicate(),
                    };
                    bridge.settle(returned, accepted);
                    bridge.settle_result(result, id, submitted).await;
                }
                Err(failure) => {
                    for token in [returned, result] {
                        bridge.settle(token, Settle::Rejected(failure.clone()));
                    }
                }
            }
        });
        Ok(())
    }

    /// The tokens of a handle's two promises — the one returned, settled with the
    /// handle, and its result's (not reported if never awaited) — and the returned one.
    pub(crate) fn handle_promises<'env>(
        &self,
        env: &'env Env,
    ) -> napi::Result<(u64, u64, Unknown<'env>)> {
        let rt = &self.runtime;
        let result = rt.next_token();
        rt.detached_promise(env, result)?;
        let returned = rt.next_token();
        Ok((returned, result, rt.promise(env, returned)?))
    }

    fn event_key(env: &Env, key: Js<String>) -> napi::Result<String> {
        let key = At::argument("key")
            .name(key)
            .map_err(|failure| failure.throw(env))?;
        check_key(&key, true)
            .map_err(|message| JsFailure::range_error("INVALID_ARGUMENT", message).throw(env))?;
        Ok(key)
    }
}

/// The operations of `client_methods!`, with the arguments as JavaScript passed them.
impl Client {
    pub(crate) fn cancel<'env>(&self, env: &'env Env, id: Js<f64>) -> napi::Result<Unknown<'env>> {
        self.cancel_id(env, command_id(id))
    }

    pub(crate) fn command<'env>(&self, env: &'env Env, id: Js<f64>) -> napi::Result<Unknown<'env>> {
        self.call(env, command_id(id), |client, id| async move {
            client.command(id).await.map(|s| s.map(CommandStatus::from))
        })
    }

    pub(crate) fn list_commands<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        state: Js<String>,
        options: Option<Js<ListCommandsOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let args = At::argument("laneId").name(lane).and_then(|lane| {
            let at = At::argument("state");
            let state = state
                .get(&at)?
                .parse::<CommandState>()
                .map_err(|error| at.range_error(format!("state: {}", error_reason(&error))))?;
            let page = match options {
                Some(options) => options.get(&At::argument("options"))?.into_page()?,
                None => Page::default(),
            };
            Ok((lane, state, page))
        });
        self.call(env, args, |client, (lane, state, page)| async move {
            let listed = client.list_commands(&lane, state, page).await?;
            Ok::<_, LaneError>(
                listed
                    .into_iter()
                    .map(CommandStatus::from)
                    .collect::<Vec<_>>(),
            )
        })
    }

    pub(crate) fn put_schedule<'env>(
        &self,
        env: &'env Env,
        options: Unknown<'_>,
    ) -> napi::Result<Unknown<'env>> {
        let at = At::argument("options");
        let options = match Given::of(env, &options)
            .to::<Js<ScheduleOptions>>()?
            .get(&at)
        {
            Ok(options) => options,
            Err(failure) => return self.runtime.rejected(env, &failure),
        };
        // The payload by the JSON rule (`NOT_JSON`, path `payload`), as a submit's.
        let payload = match payload_value(&self.runtime, env, options.payload()?)? {
            Ok(payload) => payload,
            Err(error) => {
                let token = self.runtime.next_token();
                let promise = self.runtime.promise(env, token)?;
                self.runtime.reject(env, token, None, error, false)?;
                return Ok(promise);
            }
        };
        self.call(
            env,
            options.into_schedule(payload),
            |client, schedule| async move {
                client.put_schedule(schedule).await.map(ScheduleInfo::from)
            },
        )
    }

    pub(crate) fn remove_schedule<'env>(
        &self,
        env: &'env Env,
        name: Js<String>,
    ) -> napi::Result<Unknown<'env>> {
        self.call(env, schedule_name(name), |client, name| async move {
            client.remove_schedule(&name).await
        })
    }

    pub(crate) fn schedules<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.call(env, Ok(()), |client, ()| async move {
            let schedules = client.schedules().await?;
            Ok::<_, LaneError>(
                schedules
                    .into_iter()
                    .map(ScheduleInfo::from)
                    .collect::<Vec<_>>(),
            )
        })
    }

    pub(crate) fn set_schedule_paused<'env>(
        &self,
        env: &'env Env,
        name: Js<String>,
        paused: bool,
    ) -> napi::Result<Unknown<'env>> {
        self.call(env, schedule_name(name), move |client, name| async move {
            if paused {
                client.pause_schedule(&name).await
            } else {
                client.resume_schedule(&name).await
            }
            .map_err(|error| match error {
                // An unknown name, in the words of a Node user.
                LaneError::InvalidInput(reason) => At::argument("name").range_error(format!(
                    "name: {}",
                    reason.replace("put_schedule", "putSchedule")
                )),
                error => error.into(),
            })
        })
    }

    pub(crate) fn stats<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.call(env, Ok(()), |client, ()| async move {
            client.stats().await.map(QueueStats::from)
        })
    }

    pub(crate) fn pause_lane<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        duration_ms: Option<Js<f64>>,
    ) -> napi::Result<Unknown<'env>> {
        let at = At::argument("durationMs");
        let args = At::argument("laneId").name(lane).and_then(|lane| {
            let duration = duration_ms.map(|ms| ms.get(&at).and_then(|ms| at.millis(ms)));
            Ok((lane, duration.transpose()?))
        });
        self.call(env, args, |client, (lane, duration)| async move {
            match duration {
                None => client.pause_lane(&lane).await,
                Some(duration) => client.pause_lane_for(&lane, duration).await,
            }
            .map_err(|error| argument_failure(&error, "durationMs"))
        })
    }

    pub(crate) fn resume_lane<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
    ) -> napi::Result<Unknown<'env>> {
        let lane = At::argument("laneId").name(lane);
        self.call(env, lane, |client, lane| async move {
            client.resume_lane(&lane).await
        })
    }

    /// The lane and group arguments of the group methods.
    fn lane_and_group(lane: Js<String>, group: Js<String>) -> Result<(String, String), JsFailure> {
        let lane = At::argument("laneId").name(lane)?;
        Ok((lane, group_key(group)?))
    }

    pub(crate) fn set_group_paused<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        group: Js<String>,
        paused: bool,
    ) -> napi::Result<Unknown<'env>> {
        let args = Self::lane_and_group(lane, group);
        self.call(env, args, move |client, (lane, group)| async move {
            if paused {
                client.pause_group(&lane, &group).await
            } else {
                client.resume_group(&lane, &group).await
            }
        })
    }

    pub(crate) fn cancel_group<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        group: Js<String>,
    ) -> napi::Result<Unknown<'env>> {
        let args = Self::lane_and_group(lane, group);
        self.call(env, args, |client, (lane, group)| async move {
            client.cancel_group(&lane, &group).await.map(count)
        })
    }

    pub(crate) fn group_status<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        group: Js<String>,
    ) -> napi::Result<Unknown<'env>> {
        let args = Self::lane_and_group(lane, group);
        self.call(env, args, |client, (lane, group)| async move {
            client
                .group_status(&lane, &group)
                .await
                .map(GroupStatus::from)
        })
    }

    pub(crate) fn groups<'env>(
        &self,
        env: &'env Env,
        lane: Js<String>,
        options: Option<Js<ListCommandsOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let args = At::argument("laneId").name(lane).and_then(|lane| {
            let page = match options {
                Some(options) => options.get(&At::argument("options"))?.into_page()?,
                None => Page::default(),
            };
            Ok((lane, page))
        });
        self.call(env, args, |client, (lane, page)| async move {
            let groups = client.groups(&lane, page).await?;
            Ok::<_, LaneError>(
                groups
                    .into_iter()
                    .map(GroupStatus::from)
                    .collect::<Vec<_>>(),
            )
        })
    }

    pub(crate) fn dead_letters<'env>(
        &self,
        env: &'env Env,
        limit: Option<Js<f64>>,
    ) -> napi::Result<Unknown<'env>> {
        let at = At::argument("limit");
        let limit = limit.map(|n| n.get(&at).and_then(|n| at.whole(n, MAX_SAFE_INTEGER)));
        // No limit: all of them.
        let limit = limit
            .transpose()
            .map(|n| n.map_or(usize::MAX, |n| n as usize));
        self.call(env, limit, |client, limit| async move {
            let letters = client.dead_letters(limit).await?;
            Ok::<_, LaneError>(
                letters
                    .into_iter()
                    .map(DeadLetter::from)
                    .collect::<Vec<_>>(),
            )
        })
    }

    pub(crate) fn redrive<'env>(&self, env: &'env Env, id: Js<f64>) -> napi::Result<Unknown<'env>> {
        let id = match command_id(id) {
            Ok(id) => id,
            Err(failure) => return self.runtime.rejected(env, &failure),
        };
        let (returned, result, promise) = self.handle_promises(env)?;
        let source = self.source.clone();
        self.hand_out(env, returned, result, async move {
            Ok(source.client().await?.redrive(id).await?)
        })?;
        Ok(promise)
    }

    pub(crate) fn on_size_less_than<'env>(
        &self,
        env: &'env Env,
        limit: Js<f64>,
        lane: Option<Js<String>>,
    ) -> napi::Result<Unknown<'env>> {
        let at = At::argument("limit");
        // The type and range of the number here; whether it is 1 or more is the core's
        // rule (`wait_waiting_below`), the same on either engine.
        let args = limit
            .get(&at)
            .and_then(|n| at.whole(n, MAX_SAFE_INTEGER))
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .and_then(|limit| {
                let lane = lane
                    .map(|lane| At::argument("lane").name(lane))
                    .transpose()?;
                Ok((limit, lane))
            });
        let (limit, lane) = match args {
            Ok(args) => args,
            Err(failure) => return self.runtime.rejected(env, &failure),
        };
        let source = self.source.clone();
        self.run(env, async move {
            let Some(client) = source.backlog_client().await? else {
                return Ok(());
            };
            client
                .wait_waiting_below(limit, lane.as_deref())
                .await
                .map_err(|error| match error {
                    LaneError::InvalidInput(reason) => At::argument("limit")
                        .range_error(format!("limit must be 1 or more ({reason})")),
                    error => error.into(),
                })
        })
    }

    pub(crate) fn serve_dashboard<'env>(
        &self,
        env: &'env Env,
        options: Option<Js<crate::dashboard::DashboardOptions>>,
    ) -> napi::Result<Unknown<'env>> {
        let request = options
            .map(|options| options.get(&At::argument("options")))
            .transpose()
            .and_then(|options| options.unwrap_or_default().into_request());
        let request = match request {
            Ok(request) => request,
            Err(failure) => return self.runtime.rejected(env, &failure),
        };
        let token = self.runtime.next_token();
        let promise = self.runtime.promise(env, token)?;
        let source = self.source.clone();
        crate::dashboard::serve(
            &self.dashboards,
            self.bridge.clone(),
            token,
            request,
            self.source.metrics(),
            async move { source.client().await },
        );
        Ok(promise)
    }

    pub(crate) fn purge_dead_letters<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.call(env, Ok(()), |client, ()| async move {
            client.purge_dead_letters().await.map(count)
        })
    }

    pub(crate) fn events<'env>(
        &self,
        env: &'env Env,
        keys: Option<Js<EventKeys>>,
    ) -> napi::Result<Unknown<'env>> {
        let keys = keys
            .map(|keys| keys.get(&At::argument("event keys"))?.checked())
            .transpose()
            .map_err(|failure| failure.throw(env))?;
        let capacity = self.source.event_capacity();
        // After a shutdown no event will come: the iterator is over at once.
        let over = self.source.events_over();
        self.runtime.iterate(env, keys, capacity, over)
    }

    pub(crate) fn on(&self, env: &Env, key: Js<String>, listener: Unknown<'_>) -> napi::Result<()> {
        let key = Self::event_key(env, key)?;
        function(env, "listener", &listener)?;
        self.runtime.on(env, key, listener)
    }

    pub(crate) fn off(
        &self,
        env: &Env,
        key: Js<String>,
        listener: Unknown<'_>,
    ) -> napi::Result<()> {
        let key = Self::event_key(env, key)?;
        function(env, "listener", &listener)?;
        self.runtime.off(env, key, listener)
    }
}

/// A group key argument (`group`): a string, by the core's rule (`check_group`: not
/// empty, at most 256 bytes, no control characters), checked here so that both engines
/// refuse a bad key the same way.
fn group_key(group: Js<String>) -> Result<String, JsFailure> {
    let at = At::argument("group");
    let group = group.get(&at)?;
    a3s_lane::check_group(&group)
        .map_err(|error| at.range_error(format!("group: {}", error_reason(&error))))?;
    Ok(group)
}

/// The reason a core error gives, without the kind's prefix ("invalid input: ").
fn error_reason(error: &LaneError) -> String {
    match error {
        LaneError::InvalidInput(reason) | LaneError::ConfigError(reason) => reason.clone(),
        error => error.to_string(),
    }
}

impl NativeCallbacks for Client {
    fn cancel(&self, id: CommandId) {
        let source = self.source.clone();
        let mut work = Box::pin(async move {
            if let Ok(client) = source.client().await {
                // The outcome shows in the command's result.
                let _ = client.cancel(id).await;
            }
        });
        if poll_here(work.as_mut()).is_pending() {
            spawn(work);
        }
    }

    fn cancel_from_handle<'env>(
        &self,
        env: &'env Env,
        id: CommandId,
    ) -> napi::Result<Unknown<'env>> {
        self.cancel_id(env, Ok(id))
    }

    fn unfinished(&self) -> usize {
        self.source.unfinished()
    }

    fn events_wanted(&self, env: &Env, wanted: bool) {
        self.source.set_events_wanted(wanted);
        let source = &self.source;
        self.runtime.set_events_wanted(env, wanted, || {
            // Subscribing may start a reader of a Redis queue's event stream: a tokio task.
            source.now().map(|client| in_runtime(|| client.subscribe()))
        });
    }
}

/// The `#[napi]` methods of the client surface, for a class with a
/// `fn client(&self) -> &Client`: `client_methods!(Lane)` and
/// `client_methods!(RedisQueue)` give both the same methods, documented once.
macro_rules! client_methods {
    ($class:ident) => {
        #[napi_derive::napi]
        impl $class {
            /// Cancels a command by id. Resolves with `'cancelled'` (it was pending or
            /// waiting for a retry: it ended at once, and its promise rejects with code
            /// `CANCELLED`), `'signalled'` (it is running: its handler's `ctx.signal` was
            /// aborted, and it ends as cancelled once the handler stops, or is abandoned
            /// after its lane's `cancelGraceMs`), `'already_finished'` or `'unknown'`.
            #[napi(
                ts_args_type = "commandId: number",
                ts_return_type = "Promise<CancelOutcome>"
            )]
            pub fn cancel<'env>(
                &self,
                env: &'env napi::Env,
                command_id: $crate::convert::Js<f64>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().cancel(env, command_id)
            }

            /// Where a command is: its `CommandStatus` (`id`, `laneId`, `commandType`,
            /// `state`, `attempts`, the times `submittedAt`, `startedAt` and `finishedAt`
            /// in milliseconds since the Unix epoch or `null`, its `result` and its
            /// `error`), or `null` when the queue knows nothing of it. Both engines know
            /// pending, delayed and running commands, dead letters, and finished
            /// commands for as long as their lane keeps them (`keepLast`, `keepForMs`:
            /// the last 1000 of each final state for a day by default), so another
            /// process (or this one after a restart, with durable storage or Redis)
            /// reads the result of a command submitted before.
            #[napi(
                ts_args_type = "commandId: number",
                ts_return_type = "Promise<CommandStatus | null>"
            )]
            pub fn command<'env>(
                &self,
                env: &'env napi::Env,
                command_id: $crate::convert::Js<f64>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().command(env, command_id)
            }

            /// A lane's commands in `state`, one page of them (`options.offset`,
            /// default 0; `options.limit`, 1 to 1000, default 100): pending ones in the
            /// order they will start, delayed ones by due time, running ones by start,
            /// finished ones (those the lane keeps) and dead letters newest first.
            /// Rejects with code `LANE_NOT_FOUND` for an unknown lane, and a
            /// `RangeError` or `TypeError` (code `INVALID_ARGUMENT`) for an unknown
            /// state or a bad page.
            #[napi(
                ts_generic_types = "S extends CommandState = CommandState",
                ts_args_type = "laneId: string, state: S, options?: ListCommandsOptions",
                ts_return_type = "Promise<Array<CommandStatus & { state: S }>>"
            )]
            pub fn list_commands<'env>(
                &self,
                env: &'env napi::Env,
                lane_id: $crate::convert::Js<String>,
                state: $crate::convert::Js<String>,
                options: Option<$crate::convert::Js<$crate::client::ListCommandsOptions>>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().list_commands(env, lane_id, state, options)
            }

            /// Creates or replaces the recurring schedule `options.name`: from now on it
            /// submits `options.commandType` with `options.payload` to `options.lane` at
            /// each of its instants — every `options.everyMs` milliseconds (at the
            /// multiples of it since the Unix epoch), or at each instant of the cron
            /// expression `options.cron` (5 fields, or 6 with seconds first) in the IANA
            /// time zone `options.timeZone` (default `'UTC'`) — each instant once,
            /// however many processes run the queue (a `queue.schedule.fired` event
            /// names it). `options.missed` says what it does about instants missed while
            /// the queue was down or the schedule paused: `'skip'` them (the default) or
            /// `'runOnce'`, firing the latest once; `options.jitterMs` delays each
            /// instant's command by a part of it (less than the interval, at most an
            /// hour). A replaced schedule keeps its counts and whether it is paused.
            /// Resolves with its `ScheduleInfo`. Rejects with a `TypeError` or
            /// `RangeError` (code `INVALID_ARGUMENT`) for both or neither of `everyMs`
            /// and `cron`, a number that is not a whole number of 0 or more, a cron
            /// expression that does not parse, an unknown time zone or a bad name, with
            /// `NOT_JSON` for a payload JSON cannot hold, and with `LANE_NOT_FOUND` (or,
            /// on a `Lane`, `HANDLER_NOT_FOUND`) for an unknown lane or command type.
            #[napi(
                ts_args_type = "options: ScheduleOptions",
                ts_return_type = "Promise<ScheduleInfo>"
            )]
            pub fn put_schedule<'env>(
                &self,
                env: &'env napi::Env,
                options: napi::bindgen_prelude::Unknown<'_>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().put_schedule(env, options)
            }

            /// Removes the schedule `name`; resolves with `false` when there was none.
            #[napi(ts_args_type = "name: string", ts_return_type = "Promise<boolean>")]
            pub fn remove_schedule<'env>(
                &self,
                env: &'env napi::Env,
                name: $crate::convert::Js<String>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().remove_schedule(env, name)
            }

            /// Every recurring schedule of the queue, by name, with its next instant and
            /// its counts (`ScheduleInfo`).
            #[napi(ts_return_type = "Promise<Array<ScheduleInfo>>")]
            pub fn schedules<'env>(
                &self,
                env: &'env napi::Env,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().schedules(env)
            }

            /// Pauses the schedule `name`: it fires nothing until `resumeSchedule(name)`.
            /// Rejects with a `RangeError` (code `INVALID_ARGUMENT`) for an unknown name.
            #[napi(ts_args_type = "name: string", ts_return_type = "Promise<void>")]
            pub fn pause_schedule<'env>(
                &self,
                env: &'env napi::Env,
                name: $crate::convert::Js<String>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().set_schedule_paused(env, name, true)
            }

            /// Resumes the schedule `name`: its next instant is the first after now (those
            /// in between are skipped, and a `queue.schedule.skipped` event says so).
            /// Rejects with a `RangeError` (code `INVALID_ARGUMENT`) for an unknown name.
            #[napi(ts_args_type = "name: string", ts_return_type = "Promise<void>")]
            pub fn resume_schedule<'env>(
                &self,
                env: &'env napi::Env,
                name: $crate::convert::Js<String>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().set_schedule_paused(env, name, false)
            }

            /// Stops starting commands from a lane (running ones go on; on a `RedisQueue`,
            /// on every worker). With `durationMs` the lane resumes by itself after that
            /// long, for example after an HTTP 429; a shorter pause never cuts a longer
            /// one short. Rejects with code `LANE_NOT_FOUND` for an unknown lane.
            #[napi(
                ts_args_type = "laneId: string, durationMs?: number",
                ts_return_type = "Promise<void>"
            )]
            pub fn pause_lane<'env>(
                &self,
                env: &'env napi::Env,
                lane_id: $crate::convert::Js<String>,
                duration_ms: Option<$crate::convert::Js<f64>>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().pause_lane(env, lane_id, duration_ms)
            }

            /// Ends a pause of a lane (timed or not) and starts what now fits.
            #[napi(ts_args_type = "laneId: string", ts_return_type = "Promise<void>")]
            pub fn resume_lane<'env>(
                &self,
                env: &'env napi::Env,
                lane_id: $crate::convert::Js<String>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().resume_lane(env, lane_id)
            }

            /// Stops starting the commands of group `group` (`options.group` of a submit)
            /// in lane `laneId`: running ones go on (on a `RedisQueue`, on every worker),
            /// and the lane's other groups take its turns, until `resumeGroup`. A group
            /// may be paused before it has commands. Rejects with a `RangeError` or
            /// `TypeError` (code `INVALID_ARGUMENT`) for a bad group key, and with code
            /// `LANE_NOT_FOUND` for an unknown lane.
            #[napi(
                ts_args_type = "laneId: string, group: string",
                ts_return_type = "Promise<void>"
            )]
            pub fn pause_group<'env>(
                &self,
                env: &'env napi::Env,
                lane_id: $crate::convert::Js<String>,
                group: $crate::convert::Js<String>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().set_group_paused(env, lane_id, group, true)
            }

            /// Starts the commands of a paused group again (in its turns).
            #[napi(
                ts_args_type = "laneId: string, group: string",
                ts_return_type = "Promise<void>"
            )]
            pub fn resume_group<'env>(
                &self,
                env: &'env napi::Env,
                lane_id: $crate::convert::Js<String>,
                group: $crate::convert::Js<String>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().set_group_paused(env, lane_id, group, false)
            }

            /// Cancels every command of group `group` in lane `laneId`: pending and
            /// delayed ones end now as cancelled (their promises reject with code
            /// `CANCELLED`), running ones have their `ctx.signal` aborted (as `cancel`
            /// does). Resolves with how many commands the cancel reached.
            #[napi(
                ts_args_type = "laneId: string, group: string",
                ts_return_type = "Promise<number>"
            )]
            pub fn cancel_group<'env>(
                &self,
                env: &'env napi::Env,
                lane_id: $crate::convert::Js<String>,
                group: $crate::convert::Js<String>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().cancel_group(env, lane_id, group)
            }

            /// A group's `GroupStatus`: its pending and running commands, whether it is
            /// paused or held back by its rate limit, and its cap (all counts 0 for a
            /// group with nothing waiting or running).
            #[napi(
                ts_args_type = "laneId: string, group: string",
                ts_return_type = "Promise<GroupStatus>"
            )]
            pub fn group_status<'env>(
                &self,
                env: &'env napi::Env,
                lane_id: $crate::convert::Js<String>,
                group: $crate::convert::Js<String>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().group_status(env, lane_id, group)
            }

            /// The groups of lane `laneId` that have commands waiting or running, or are
            /// paused, sorted by key, one page of them (`options.offset`, default 0;
            /// `options.limit`, 1 to 1000, default 100; as `listCommands`). Commands of
            /// no group are not listed.
            #[napi(
                ts_args_type = "laneId: string, options?: ListCommandsOptions",
                ts_return_type = "Promise<Array<GroupStatus>>"
            )]
            pub fn groups<'env>(
                &self,
                env: &'env napi::Env,
                lane_id: $crate::convert::Js<String>,
                options: Option<$crate::convert::Js<$crate::client::ListCommandsOptions>>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().groups(env, lane_id, options)
            }

            /// The dead letters (commands that failed for good), oldest first; at most
            /// `limit` of them (all when absent). A `Lane` keeps them only when created
            /// with `deadLetterCapacity`; without, this is `[]`.
            #[napi(
                ts_args_type = "limit?: number",
                ts_return_type = "Promise<Array<DeadLetter>>"
            )]
            pub fn dead_letters<'env>(
                &self,
                env: &'env napi::Env,
                limit: Option<$crate::convert::Js<f64>>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().dead_letters(env, limit)
            }

            /// Sends a dead letter's command back to the end of its lane, its attempts
            /// counted afresh (in process under a new id; a `RedisQueue` keeps its id); it
            /// leaves the dead letters once the queue accepted it. Resolves with its
            /// `CommandHandle`.
            #[napi(
                ts_args_type = "commandId: number",
                ts_return_type = "Promise<CommandHandle>"
            )]
            pub fn redrive<'env>(
                &self,
                env: &'env napi::Env,
                command_id: $crate::convert::Js<f64>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().redrive(env, command_id)
            }

            /// Resolves when fewer than `limit` commands wait to start (pending or
            /// delayed) in `lane`, or in all lanes together without one; at once if that
            /// holds now. For a producer that keeps its backlog bounded: `await
            /// queue.onSizeLessThan(100)` before the next submit. Rejects with a
            /// `RangeError` or `TypeError` (code `INVALID_ARGUMENT`) for a `limit` that is
            /// not a whole number of 1 or more, and a `LaneNotFoundError` for a lane the
            /// queue does not have. A `Lane` resolves at once after `shutdown()`. On a
            /// `RedisQueue` it counts the commands of every process, woken by the queue's
            /// event stream: with `events: false` it rejects with code `QUEUE`.
            #[napi(
                ts_args_type = "limit: number, lane?: string",
                ts_return_type = "Promise<void>"
            )]
            pub fn on_size_less_than<'env>(
                &self,
                env: &'env napi::Env,
                limit: $crate::convert::Js<f64>,
                lane: Option<$crate::convert::Js<String>>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().on_size_less_than(env, limit, lane)
            }

            /// Deletes every dead letter (from durable storage too) and resolves with how
            /// many there were.
            #[napi(ts_return_type = "Promise<number>")]
            pub fn purge_dead_letters<'env>(
                &self,
                env: &'env napi::Env,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().purge_dead_letters(env)
            }

            /// Serves the queue's web dashboard in the background (on the addon's tokio
            /// runtime) and resolves with its `Dashboard`: `url` to open, `token` for
            /// actions, `close()`. Listens on `options.host` (`'127.0.0.1'`, this
            /// machine only, by default) and `options.port` (9090; 0 for any free port);
            /// actions (pause, resume, cancel, redrive, delete) need `options.token` or,
            /// left out, a generated one (never printed: read `dashboard.token`);
            /// `options.readOnly` refuses every action. A `Lane` with
            /// `{ metrics: true }` shows wait and run percentiles and serves its series
            /// on `/metrics`. It keeps the process alive until `close()` or the queue's
            /// `shutdown()`. Bad options reject with a `TypeError` or `RangeError`
            /// (code `INVALID_ARGUMENT`); a port in use with code `EADDRINUSE`, naming
            /// the address.
            #[napi(
                ts_args_type = "options?: DashboardOptions",
                ts_return_type = "Promise<Dashboard>"
            )]
            pub fn serve_dashboard<'env>(
                &self,
                env: &'env napi::Env,
                options: Option<$crate::convert::Js<$crate::dashboard::DashboardOptions>>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().serve_dashboard(env, options)
            }

            /// The events of `keys` (all when absent; see `EVENT_KEYS`) as an async
            /// iterator, from now on: on a `RedisQueue`, of every command of the queue,
            /// whichever process submitted it and whichever worker runs it. A `Lane`'s
            /// ends after `queue.shutdown.complete`; `return()` (or leaving a
            /// `for await`) ends any. An iterator more than the queue's event capacity
            /// behind (`eventCapacity`; `DEFAULTS.redis_queue.event_capacity`) loses the
            /// oldest and gets one `queue.events.lagged` event saying how many. It does
            /// not keep the process alive.
            #[napi(
                ts_generic_types = "K extends LaneEventKey = LaneEventKey",
                ts_args_type = "keys?: K | K[]",
                ts_return_type = "AsyncIterableIterator<LaneEvent<K | 'queue.events.lagged'>>"
            )]
            pub fn events<'env>(
                &self,
                env: &'env napi::Env,
                keys: Option<$crate::convert::Js<$crate::events::EventKeys>>,
            ) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
                self.client().events(env, keys)
            }

            /// Calls `listener` with every event of `key` (`'*'`: every event; see
            /// `EVENT_KEYS`), as `events()` sees them. Listeners do not keep the process
            /// alive; an error thrown by one is reported as an uncaught exception.
            #[napi(
                ts_generic_types = "K extends LaneEventKey | '*'",
                ts_args_type = "key: K, listener: (event: K extends LaneEventKey ? LaneEvent<K> : LaneEvent) => void"
            )]
            pub fn on(
                &self,
                env: napi::Env,
                key: $crate::convert::Js<String>,
                listener: napi::bindgen_prelude::Unknown<'_>,
            ) -> napi::Result<()> {
                self.client().on(&env, key, listener)
            }

            /// Removes a listener added with `on`.
            #[napi(
                ts_generic_types = "K extends LaneEventKey | '*'",
                ts_args_type = "key: K, listener: (event: K extends LaneEventKey ? LaneEvent<K> : LaneEvent) => void"
            )]
            pub fn off(
                &self,
                env: napi::Env,
                key: $crate::convert::Js<String>,
                listener: napi::bindgen_prelude::Unknown<'_>,
            ) -> napi::Result<()> {
                self.client().off(&env, key, listener)
            }
        }
    };
}
pub(crate) use client_methods;
