//! [`LaneCore`]: the part of a `Lane` its tokio tasks share — the core `QueueManager`
//! once it exists (a durable lane builds it when `start()` has opened the store), the
//! handler types registered so far, and whether events are wanted — how it is built, and
//! how the lane's client surface (`crate::client`) finds it.

use std::sync::Arc;

use a3s_lane::{EventEmitter, LaneError, QueueClient, QueueManager, QueueManagerBuilder};
use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::client::ClientSource;
use crate::config::queue::QueueSetup;
use crate::error::{JsFailure, ToJsError};
use crate::runtime::{Bridge, JsHandler, Mail};
use crate::stats::count;

/// What a lane's tokio tasks share.
pub(crate) struct LaneCore {
    pub(crate) state: Mutex<CoreState>,
    ready: Notify,
    pub(crate) bridge: Arc<Bridge>,
    pub(crate) setup: QueueSetup,
}

#[derive(Default)]
pub(crate) struct CoreState {
    pub(crate) manager: Option<QueueManager>,
    /// Set once `shutdown()` or `shutdownNow()` finished: the queue (and its store) is
    /// released, so the same store can be opened again.
    closed: bool,
    failed: Option<LaneError>,
    pub(crate) starting: bool,
    pub(crate) handler_types: Vec<String>,
    events_wanted: bool,
}

impl LaneCore {
    pub(crate) fn new(bridge: Arc<Bridge>, setup: QueueSetup) -> Self {
        Self {
            state: Mutex::new(CoreState::default()),
            ready: Notify::new(),
            bridge,
            setup,
        }
    }

    pub(crate) fn manager(&self) -> Option<QueueManager> {
        self.state.lock().manager.clone()
    }

    /// The queue's builder, with the lanes, options and the handlers of `handler_types`
    /// (`build()` checks them all).
    pub(crate) fn builder(
        &self,
        handler_types: &[String],
    ) -> Result<QueueManagerBuilder, LaneError> {
        let setup = &self.setup;
        let events = EventEmitter::try_new(setup.event_capacity)?;
        let mut builder = QueueManagerBuilder::new(events).with_spawner(
            crate::spawner::MailboxSpawner::new(self.bridge.mailbox.clone()),
        );
        for lane in &setup.lanes {
            builder = builder.with_lane(&lane.id, lane.config.clone(), lane.priority);
        }
        if let Some(max) = setup.max_concurrency {
            builder = builder.with_max_concurrency(max);
        }
        if let Some(capacity) = setup.dead_letter_capacity {
            builder = builder.with_dlq(capacity);
        }
        if let Some(metrics) = &setup.metrics {
            builder = builder.with_metrics(metrics.clone());
        }
        for command_type in handler_types {
            builder = builder.with_handler(
                command_type,
                JsHandler::new(command_type, self.bridge.clone()),
            );
        }
        Ok(builder)
    }

    /// Waits until the manager exists (durable lanes: until `start()` opened the store).
    pub(crate) async fn ready(&self) -> Result<QueueManager, LaneError> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state.lock();
                if let Some(manager) = &state.manager {
                    return Ok(manager.clone());
                }
                if state.closed {
                    return Err(LaneError::ShutdownInProgress);
                }
                if let Some(error) = &state.failed {
                    return Err(error.clone());
                }
            }
            notified.await;
        }
    }

    /// Publishes the manager (registering the handlers added meanwhile) and hands the
    /// JavaScript thread its event subscription if someone listens.
    pub(crate) fn publish(&self, manager: QueueManager) {
        let mut state = self.state.lock();
        for command_type in &state.handler_types {
            manager.register_handler(
                command_type.clone(),
                JsHandler::new(command_type, self.bridge.clone()),
            );
        }
        if state.events_wanted {
            // Subscribed before the queue starts, so no event is missed.
            self.bridge
                .mailbox
                .send(Mail::Subscribe(manager.subscribe()));
        }
        state.manager = Some(manager);
        drop(state);
        self.ready.notify_waiters();
    }

    /// Releases the queue after a shutdown; its store closes once its last task ends.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        state.manager = None;
        state.closed = true;
        drop(state);
        self.ready.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    pub(crate) fn fail(&self, error: LaneError) {
        let mut state = self.state.lock();
        state.failed = Some(error);
        state.starting = false;
        drop(state);
        self.ready.notify_waiters();
    }

    pub(crate) fn register_handler(&self, command_type: &str) {
        let mut state = self.state.lock();
        if !state.handler_types.iter().any(|t| t == command_type) {
            state.handler_types.push(command_type.to_owned());
        }
        if let Some(manager) = &state.manager {
            manager.register_handler(
                command_type.to_owned(),
                JsHandler::new(command_type, self.bridge.clone()),
            );
        }
    }
}

/// A lane that was shut down: its queue (and store) is released.
pub(crate) fn shut_down() -> JsFailure {
    JsFailure::error(
        "SHUTDOWN",
        "the lane was shut down; create a new Lane to go on",
    )
}

#[async_trait]
impl ClientSource for LaneCore {
    fn unfinished(&self) -> usize {
        self.manager().map_or(0, |manager| {
            let stats = manager.queue().stats_now();
            // A run already answered (timed out, cancelled) is nobody's lost work.
            let answered: usize = stats.lanes.values().map(|l| l.abandoned_running).sum();
            stats.total_pending + stats.total_delayed + stats.total_active.saturating_sub(answered)
        })
    }

    fn now(&self) -> Option<Arc<dyn QueueClient>> {
        self.manager()
            .map(|manager| Arc::new(manager) as Arc<dyn QueueClient>)
    }

    async fn client(&self) -> Result<Arc<dyn QueueClient>, JsFailure> {
        {
            let state = self.state.lock();
            if let Some(manager) = &state.manager {
                return Ok(Arc::new(manager.clone()));
            }
            if state.closed {
                return Err(shut_down());
            }
            if !state.starting && state.failed.is_none() {
                // Only a durable lane has no queue before it starts.
                return Err(JsFailure::error(
                    "QUEUE",
                    "the lane opens its durable storage in start(); call lane.start() first",
                ));
            }
        }
        match self.ready().await {
            Ok(manager) => Ok(Arc::new(manager)),
            Err(LaneError::ShutdownInProgress) => Err(shut_down()),
            Err(error) => Err(error.to_js_failure()),
        }
    }

    async fn backlog_client(&self) -> Result<Option<Arc<dyn QueueClient>>, JsFailure> {
        // A lane shut down has nothing waiting: over at once. A durable lane not yet
        // started waits for its queue.
        if self.is_closed() {
            return Ok(None);
        }
        match self.ready().await {
            Ok(manager) => Ok(Some(Arc::new(manager))),
            Err(error) => Err(error.to_js_failure()),
        }
    }

    fn set_events_wanted(&self, wanted: bool) {
        self.state.lock().events_wanted = wanted;
    }

    fn event_capacity(&self) -> u32 {
        count(self.setup.event_capacity)
    }

    fn events_over(&self) -> bool {
        self.is_closed()
    }

    fn metrics(&self) -> Option<a3s_lane::QueueMetrics> {
        self.setup.metrics.clone()
    }
}
