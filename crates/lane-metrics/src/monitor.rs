//! [`QueueMonitor`]: samples a queue on an interval and warns when too many commands are
//! pending or running over all lanes.

use std::sync::{Arc, Weak};
use std::time::Duration;

use lane_core::{CommandQueue, LaneError, QueueStats, Result};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::alerts::{Alert, AlertKind, AlertLevel, Callbacks};

/// How a [`QueueMonitor`] samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Time between samples (more than zero).
    pub interval: Duration,
    /// Warn when at least this many commands are pending over all lanes (at least 1).
    pub pending_warning_threshold: usize,
    /// Warn when at least this many commands run over all lanes (at least 1).
    pub active_warning_threshold: usize,
}

impl Default for MonitorConfig {
    /// Every 5 seconds; warn at 100 pending or 50 running.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            pending_warning_threshold: 100,
            active_warning_threshold: 50,
        }
    }
}

impl MonitorConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(LaneError::ConfigError(
                "monitor interval must be greater than zero".into(),
            ));
        }
        if self.pending_warning_threshold == 0 || self.active_warning_threshold == 0 {
            return Err(LaneError::ConfigError(format!(
                "monitor thresholds must be at least 1 (pending {}, active {})",
                self.pending_warning_threshold, self.active_warning_threshold
            )));
        }
        Ok(())
    }
}

/// Samples a queue every [`MonitorConfig::interval`]: keeps the latest
/// [`QueueStats`], and fires an [`Alert`] (kind [`AlertKind::TotalPending`] or
/// [`AlertKind::TotalActive`], lane `*`) when a total reaches its threshold — once per
/// crossing, with an [`AlertLevel::Info`] when it falls back below. Alerts go to the
/// callbacks and to `tracing` (`warn` / `info`, target `a3s_lane::monitor`).
///
/// It holds only a weak reference to the queue: it stops when the queue is dropped,
/// when the queue has shut down and has nothing left to run, or on [`QueueMonitor::stop`].
///
/// ```
/// use a3s_lane::{EventEmitter, MonitorConfig, QueueManagerBuilder, QueueMonitor};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> a3s_lane::Result<()> {
/// let manager = QueueManagerBuilder::new(EventEmitter::new(100)).with_default_lanes().build().await?;
/// manager.start().await?;
/// let config = MonitorConfig {
///     interval: Duration::from_secs(5),
///     pending_warning_threshold: 50,
///     active_warning_threshold: 25,
/// };
/// let monitor = Arc::new(QueueMonitor::with_config(manager.queue(), config));
/// monitor.clone().start().await;
/// let stats = monitor.stats().await;
/// assert_eq!(stats.total_pending, 0);
/// monitor.stop();
/// monitor.stopped().await;
/// # Ok(()) }
/// ```
pub struct QueueMonitor {
    queue: Weak<CommandQueue>,
    config: MonitorConfig,
    last: Mutex<QueueStats>,
    /// The stop signal of the running sampler, if one runs.
    stop: Mutex<Option<Arc<Notify>>>,
    /// How many sampler tasks are alive (0 or 1, briefly 2 after a stop and a start).
    running: watch::Sender<usize>,
    /// Whether the pending / active totals are at or above their thresholds.
    high: Mutex<(bool, bool)>,
    callbacks: Callbacks,
}

impl std::fmt::Debug for QueueMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueMonitor")
            .field("config", &self.config)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl QueueMonitor {
    /// A monitor with [`MonitorConfig::default`].
    pub fn new(queue: Arc<CommandQueue>) -> Self {
        Self::build(&queue, MonitorConfig::default())
    }

    /// A monitor with `config`, or an error if the config is invalid.
    pub fn try_with_config(queue: Arc<CommandQueue>, config: MonitorConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::build(&queue, config))
    }

    /// A monitor with `config` (the 0.3 API's constructor).
    ///
    /// # Panics
    /// If the config is invalid (a zero interval or threshold);
    /// [`QueueMonitor::try_with_config`] returns the error instead.
    pub fn with_config(queue: Arc<CommandQueue>, config: MonitorConfig) -> Self {
        Self::try_with_config(queue, config).unwrap_or_else(|e| panic!("{e}"))
    }

    fn build(queue: &Arc<CommandQueue>, config: MonitorConfig) -> Self {
        Self {
            queue: Arc::downgrade(queue),
            config,
            last: Mutex::new(queue.stats_now()),
            stop: Mutex::new(None),
            running: watch::Sender::new(0),
            high: Mutex::new((false, false)),
            callbacks: Callbacks::default(),
        }
    }

    /// The config.
    pub fn config(&self) -> MonitorConfig {
        self.config
    }

    /// Adds a function called with every alert this monitor fires.
    pub async fn add_callback<F>(&self, callback: F)
    where
        F: Fn(&Alert) + Send + Sync + 'static,
    {
        self.callbacks.add(Arc::new(callback));
    }

    /// Starts sampling in the background on the current tokio runtime (one sample now,
    /// then one per interval). Does nothing if it already runs.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn start(self: Arc<Self>) {
        let stop = {
            let mut slot = self.stop.lock();
            if slot.is_some() {
                return;
            }
            let stop = Arc::new(Notify::new());
            *slot = Some(stop.clone());
            stop
        };
        self.running.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            loop {
                if !self.sample() {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(self.config.interval) => {}
                    () = stop.notified() => break,
                }
            }
            let mut slot = self.stop.lock();
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &stop)) {
                *slot = None;
            }
            drop(slot);
            self.running.send_modify(|n| *n -= 1);
        });
    }

    /// Stops sampling (the background task ends at once).
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().take() {
            stop.notify_one();
        }
    }

    /// Whether the background sampler runs.
    pub fn is_running(&self) -> bool {
        *self.running.borrow() > 0
    }

    /// Waits until the background sampler has ended (returns at once if it is not running).
    pub async fn stopped(&self) {
        let mut running = self.running.subscribe();
        let _ = running.wait_for(|running| *running == 0).await;
    }

    /// The queue's statistics now; the last sample once the queue is gone.
    pub async fn stats(&self) -> QueueStats {
        match self.queue.upgrade() {
            Some(queue) => queue.stats_now(),
            None => self.last.lock().clone(),
        }
    }

    /// The latest sample taken by the background sampler.
    pub fn last_sample(&self) -> QueueStats {
        self.last.lock().clone()
    }

    /// Takes one sample; returns whether to keep going.
    fn sample(&self) -> bool {
        let Some(queue) = self.queue.upgrade() else {
            return false;
        };
        let stats = queue.stats_now();
        let finished = queue.is_shutting_down()
            && stats.total_pending == 0
            && stats.total_active == 0
            && stats.total_delayed == 0;
        drop(queue);
        let alerts = {
            let mut guard = self.high.lock();
            let high = &mut *guard;
            let mut alerts = Vec::new();
            for (flag, kind, value, threshold) in [
                (
                    &mut high.0,
                    AlertKind::TotalPending,
                    stats.total_pending,
                    self.config.pending_warning_threshold,
                ),
                (
                    &mut high.1,
                    AlertKind::TotalActive,
                    stats.total_active,
                    self.config.active_warning_threshold,
                ),
            ] {
                let now_high = value >= threshold;
                if now_high != *flag {
                    *flag = now_high;
                    let level = if now_high {
                        AlertLevel::Warning
                    } else {
                        AlertLevel::Info
                    };
                    alerts.push(Alert::new(level, kind, "*", value as f64, threshold as f64));
                }
            }
            alerts
        };
        *self.last.lock() = stats;
        for alert in alerts {
            if alert.level == AlertLevel::Warning {
                tracing::warn!(target: "a3s_lane::monitor", "{}", alert.message);
            } else {
                tracing::info!(target: "a3s_lane::monitor", "{}", alert.message);
            }
            self.callbacks.fire(&alert);
        }
        !finished
    }
}
