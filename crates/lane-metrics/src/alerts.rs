//! [`AlertManager`]: queue depth and latency thresholds per lane, with hysteresis.
//!
//! An alert fires when a lane's value reaches a higher level than the one already
//! raised (nothing → warning → critical). A raised alert stays raised — repeated or
//! oscillating values fire nothing — until the value has stayed at or below the
//! recovery threshold for the recovery window; then an [`AlertLevel::Info`] "recovered"
//! alert fires and the next crossing fires again. Recovery is checked as values arrive.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lane_core::{CommandInfo, LaneError, Observer, Result, RunOutcome};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How long a value must stay at or below the recovery threshold before a raised alert
/// clears, unless configured otherwise.
pub const DEFAULT_ALERT_RECOVERY_WINDOW: Duration = Duration::from_secs(10);

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlertLevel {
    /// A raised alert recovered.
    Info,
    /// The warning threshold was reached.
    Warning,
    /// The critical threshold was reached.
    Critical,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertKind {
    /// A lane's pending commands.
    QueueDepth,
    /// A run's latency, in milliseconds.
    Latency,
    /// The queue's pending commands over all lanes (from a `QueueMonitor`).
    TotalPending,
    /// The queue's running commands over all lanes (from a `QueueMonitor`).
    TotalActive,
}

/// One alert, as passed to callbacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Warning, critical, or info for a recovery.
    pub level: AlertLevel,
    /// What was measured.
    pub kind: AlertKind,
    /// The lane (`*` for whole-queue alerts).
    pub lane_id: String,
    /// A sentence for humans.
    pub message: String,
    /// The value that triggered the alert.
    pub value: f64,
    /// The threshold it reached (for a recovery: the recovery threshold).
    pub threshold: f64,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp: u64,
}

impl Alert {
    pub(crate) fn new(
        level: AlertLevel,
        kind: AlertKind,
        lane_id: &str,
        value: f64,
        threshold: f64,
    ) -> Self {
        let what = match kind {
            AlertKind::QueueDepth => format!("lane '{lane_id}' queue depth"),
            AlertKind::Latency => format!("lane '{lane_id}' latency (ms)"),
            AlertKind::TotalPending => "pending commands over all lanes".to_owned(),
            AlertKind::TotalActive => "running commands over all lanes".to_owned(),
        };
        let (shown, limit) = (show(value), show(threshold));
        let message = match level {
            AlertLevel::Info => format!("{what} recovered: {shown} <= {limit}"),
            AlertLevel::Warning => format!("{what} {shown} reached the warning threshold {limit}"),
            AlertLevel::Critical => {
                format!("{what} {shown} reached the critical threshold {limit}")
            }
        };
        Self {
            level,
            kind,
            lane_id: lane_id.to_owned(),
            message,
            value,
            threshold,
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }
}

/// A number for a message: at most three decimals, no trailing zeros.
fn show(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Queue depth thresholds (pending commands per lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepthAlertConfig {
    /// Depth at which a warning fires.
    pub warning_threshold: usize,
    /// Depth at which a critical alert fires (at least `warning_threshold`).
    pub critical_threshold: usize,
    /// At or below this depth a raised alert starts recovering (below `warning_threshold`).
    pub recovery_threshold: usize,
    /// How long the depth must stay at or below `recovery_threshold` to clear the alert.
    pub recovery_window: Duration,
    /// Whether these alerts are checked at all.
    pub enabled: bool,
}

impl QueueDepthAlertConfig {
    /// Enabled thresholds; recovery at half the warning threshold, after
    /// [`DEFAULT_ALERT_RECOVERY_WINDOW`]. Fails unless `1 <= warning <= critical`.
    pub fn new(warning: usize, critical: usize) -> Result<Self> {
        let config = Self {
            warning_threshold: warning,
            critical_threshold: critical,
            recovery_threshold: warning / 2,
            recovery_window: DEFAULT_ALERT_RECOVERY_WINDOW,
            enabled: true,
        };
        config.validate()?;
        Ok(config)
    }

    /// No depth alerts.
    pub fn disabled() -> Self {
        Self {
            warning_threshold: 0,
            critical_threshold: 0,
            recovery_threshold: 0,
            recovery_window: DEFAULT_ALERT_RECOVERY_WINDOW,
            enabled: false,
        }
    }

    /// Sets the recovery threshold (checked by [`QueueDepthAlertConfig::validate`]).
    #[must_use]
    pub fn with_recovery_threshold(mut self, depth: usize) -> Self {
        self.recovery_threshold = depth;
        self
    }

    /// Sets the recovery window.
    #[must_use]
    pub fn with_recovery_window(mut self, window: Duration) -> Self {
        self.recovery_window = window;
        self
    }

    /// Checks the thresholds of an enabled config.
    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if self.warning_threshold == 0 {
            return Err(LaneError::ConfigError(
                "queue depth alerts: warning_threshold must be at least 1 (use QueueDepthAlertConfig::disabled() for no alerts)".into(),
            ));
        }
        if self.warning_threshold > self.critical_threshold {
            return Err(LaneError::ConfigError(format!(
                "queue depth alerts: warning_threshold ({}) is above critical_threshold ({})",
                self.warning_threshold, self.critical_threshold
            )));
        }
        if self.recovery_threshold >= self.warning_threshold {
            return Err(LaneError::ConfigError(format!(
                "queue depth alerts: recovery_threshold ({}) must be below warning_threshold ({})",
                self.recovery_threshold, self.warning_threshold
            )));
        }
        Ok(())
    }

    fn rule(&self) -> Option<Rule> {
        self.enabled.then_some(Rule {
            warning: self.warning_threshold as f64,
            critical: self.critical_threshold as f64,
            recovery: self.recovery_threshold as f64,
            window: self.recovery_window,
        })
    }
}

/// Latency thresholds (milliseconds per run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyAlertConfig {
    /// Latency at which a warning fires.
    pub warning_threshold_ms: f64,
    /// Latency at which a critical alert fires (at least `warning_threshold_ms`).
    pub critical_threshold_ms: f64,
    /// At or below this latency a raised alert starts recovering (below the warning).
    pub recovery_threshold_ms: f64,
    /// How long runs must stay at or below `recovery_threshold_ms` to clear the alert.
    pub recovery_window: Duration,
    /// Whether these alerts are checked at all.
    pub enabled: bool,
}

impl LatencyAlertConfig {
    /// Enabled thresholds; recovery at half the warning threshold, after
    /// [`DEFAULT_ALERT_RECOVERY_WINDOW`]. Fails unless `0 < warning <= critical`, both finite.
    pub fn new(warning_ms: f64, critical_ms: f64) -> Result<Self> {
        let config = Self {
            warning_threshold_ms: warning_ms,
            critical_threshold_ms: critical_ms,
            recovery_threshold_ms: warning_ms / 2.0,
            recovery_window: DEFAULT_ALERT_RECOVERY_WINDOW,
            enabled: true,
        };
        config.validate()?;
        Ok(config)
    }

    /// No latency alerts.
    pub fn disabled() -> Self {
        Self {
            warning_threshold_ms: 0.0,
            critical_threshold_ms: 0.0,
            recovery_threshold_ms: 0.0,
            recovery_window: DEFAULT_ALERT_RECOVERY_WINDOW,
            enabled: false,
        }
    }

    /// Sets the recovery threshold (checked by [`LatencyAlertConfig::validate`]).
    #[must_use]
    pub fn with_recovery_threshold_ms(mut self, latency_ms: f64) -> Self {
        self.recovery_threshold_ms = latency_ms;
        self
    }

    /// Sets the recovery window.
    #[must_use]
    pub fn with_recovery_window(mut self, window: Duration) -> Self {
        self.recovery_window = window;
        self
    }

    /// Checks the thresholds of an enabled config.
    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let (w, c, r) = (
            self.warning_threshold_ms,
            self.critical_threshold_ms,
            self.recovery_threshold_ms,
        );
        if !(w.is_finite() && c.is_finite() && r.is_finite()) {
            return Err(LaneError::ConfigError(format!(
                "latency alerts: thresholds must be finite numbers of milliseconds (warning {w}, critical {c}, recovery {r})"
            )));
        }
        if w <= 0.0 {
            return Err(LaneError::ConfigError(format!(
                "latency alerts: warning_threshold_ms ({w}) must be above 0 (use LatencyAlertConfig::disabled() for no alerts)"
            )));
        }
        if w > c {
            return Err(LaneError::ConfigError(format!(
                "latency alerts: warning_threshold_ms ({w}) is above critical_threshold_ms ({c})"
            )));
        }
        if !(0.0..w).contains(&r) {
            return Err(LaneError::ConfigError(format!(
                "latency alerts: recovery_threshold_ms ({r}) must be at least 0 and below warning_threshold_ms ({w})"
            )));
        }
        Ok(())
    }

    fn rule(&self) -> Option<Rule> {
        self.enabled.then_some(Rule {
            warning: self.warning_threshold_ms,
            critical: self.critical_threshold_ms,
            recovery: self.recovery_threshold_ms,
            window: self.recovery_window,
        })
    }
}

/// Validated thresholds of one kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) warning: f64,
    pub(crate) critical: f64,
    pub(crate) recovery: f64,
    pub(crate) window: Duration,
}

/// One (lane, kind) alert's hysteresis state.
#[derive(Debug, Default)]
pub(crate) struct RuleState {
    raised: Option<AlertLevel>,
    below_since: Option<Instant>,
}

impl RuleState {
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.is_some()
    }

    /// Feeds one value; returns the level and threshold of the alert to fire, if any.
    pub(crate) fn evaluate(
        &mut self,
        rule: &Rule,
        value: f64,
        now: Instant,
    ) -> Option<(AlertLevel, f64)> {
        let level = if value >= rule.critical {
            Some((AlertLevel::Critical, rule.critical))
        } else if value >= rule.warning {
            Some((AlertLevel::Warning, rule.warning))
        } else {
            None
        };
        match self.raised {
            None => {
                let (level, threshold) = level?;
                self.raised = Some(level);
                Some((level, threshold))
            }
            Some(raised) => {
                if value <= rule.recovery {
                    let since = *self.below_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= rule.window {
                        self.raised = None;
                        self.below_since = None;
                        return Some((AlertLevel::Info, rule.recovery));
                    }
                    return None;
                }
                self.below_since = None;
                match level {
                    Some((level, threshold)) if level > raised => {
                        self.raised = Some(level);
                        Some((level, threshold))
                    }
                    _ => None,
                }
            }
        }
    }
}

/// A function called with each alert.
type Callback = Arc<dyn Fn(&Alert) + Send + Sync>;

/// The callbacks of an alert source, called outside every lock.
#[derive(Default)]
pub(crate) struct Callbacks(RwLock<Vec<Callback>>);

impl Callbacks {
    pub(crate) fn add(&self, callback: Callback) {
        self.0.write().push(callback);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.read().len()
    }

    pub(crate) fn fire(&self, alert: &Alert) {
        // Cloned so that a callback may add callbacks without deadlocking.
        let callbacks: Vec<Callback> = self.0.read().clone();
        for callback in callbacks {
            callback(alert);
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Rules {
    depth: Option<Rule>,
    latency: Option<Rule>,
}

/// Depth and latency alerts per lane, with hysteresis (see the module docs above:
/// an alert fires once per crossing, and again only after recovery).
///
/// Given to [`QueueManagerBuilder::with_alerts`](lane_core::QueueManagerBuilder::with_alerts),
/// the queue checks by itself: each lane's pending count as it changes, and each run's
/// latency as it ends. Callbacks run on the queue's task that observed the change,
/// outside every queue lock; keep them short (send to a channel for slow work).
/// `queue.lane.pressure` / `queue.lane.idle` events come from the lane's
/// [`LaneConfig::with_pressure_threshold`](lane_core::LaneConfig::with_pressure_threshold).
///
/// ```
/// use a3s_lane::{AlertLevel, AlertManager};
/// use std::sync::{Arc, Mutex};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let alerts = AlertManager::with_queue_depth_alerts(100, 200);
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// alerts.add_callback(move |alert| sink.lock().unwrap().push(alert.level)).await;
///
/// alerts.check_queue_depth("api", 150).await; // warning
/// alerts.check_queue_depth("api", 160).await; // still raised: nothing
/// alerts.check_queue_depth("api", 250).await; // critical
/// assert_eq!(*seen.lock().unwrap(), [AlertLevel::Warning, AlertLevel::Critical]);
/// # }
/// ```
pub struct AlertManager {
    rules: RwLock<Rules>,
    /// Each kind's warning threshold as f64 bits (infinity when disabled), read without
    /// a lock on the fast path.
    warning: [AtomicU64; 2],
    states: Mutex<HashMap<(Box<str>, AlertKind), RuleState>>,
    /// How many (lane, kind) states are raised: with none, a value below the warning
    /// threshold needs no lookup.
    raised: AtomicUsize,
    callbacks: Callbacks,
}

impl std::fmt::Debug for AlertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertManager")
            .field("rules", &*self.rules.read())
            .field("raised", &self.raised.load(Ordering::Relaxed))
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

impl Default for AlertManager {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertManager {
    /// A manager with every alert disabled (enable with the `set_*_config` methods).
    pub fn new() -> Self {
        Self {
            rules: RwLock::new(Rules::default()),
            warning: [
                AtomicU64::new(f64::INFINITY.to_bits()),
                AtomicU64::new(f64::INFINITY.to_bits()),
            ],
            states: Mutex::new(HashMap::new()),
            raised: AtomicUsize::new(0),
            callbacks: Callbacks::default(),
        }
    }

    /// A manager with the given configs, validated.
    pub fn with_configs(depth: QueueDepthAlertConfig, latency: LatencyAlertConfig) -> Result<Self> {
        depth.validate()?;
        latency.validate()?;
        let manager = Self::new();
        manager.set_rules(|rules| {
            rules.depth = depth.rule();
            rules.latency = latency.rule();
        });
        Ok(manager)
    }

    /// Queue depth alerts only, or an error unless `1 <= warning <= critical`.
    pub fn try_with_queue_depth_alerts(warning: usize, critical: usize) -> Result<Self> {
        Self::with_configs(
            QueueDepthAlertConfig::new(warning, critical)?,
            LatencyAlertConfig::disabled(),
        )
    }

    /// Queue depth alerts only (the 0.3 API's constructor).
    ///
    /// # Panics
    /// Unless `1 <= warning <= critical`; [`AlertManager::try_with_queue_depth_alerts`]
    /// returns the error instead.
    pub fn with_queue_depth_alerts(warning: usize, critical: usize) -> Self {
        Self::try_with_queue_depth_alerts(warning, critical).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Latency alerts only, or an error unless `0 < warning_ms <= critical_ms`.
    pub fn try_with_latency_alerts(warning_ms: f64, critical_ms: f64) -> Result<Self> {
        Self::with_configs(
            QueueDepthAlertConfig::disabled(),
            LatencyAlertConfig::new(warning_ms, critical_ms)?,
        )
    }

    /// Latency alerts only (the 0.3 API's constructor).
    ///
    /// # Panics
    /// Unless `0 < warning_ms <= critical_ms`, both finite;
    /// [`AlertManager::try_with_latency_alerts`] returns the error instead.
    pub fn with_latency_alerts(warning_ms: f64, critical_ms: f64) -> Self {
        Self::try_with_latency_alerts(warning_ms, critical_ms).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Replaces the queue depth config (validated first; on error nothing changes).
    pub async fn set_queue_depth_config(&self, config: QueueDepthAlertConfig) -> Result<()> {
        config.validate()?;
        self.set_rules(|rules| rules.depth = config.rule());
        Ok(())
    }

    /// Replaces the latency config (validated first; on error nothing changes).
    pub async fn set_latency_config(&self, config: LatencyAlertConfig) -> Result<()> {
        config.validate()?;
        self.set_rules(|rules| rules.latency = config.rule());
        Ok(())
    }

    /// Adds a function called with every alert.
    pub async fn add_callback<F>(&self, callback: F)
    where
        F: Fn(&Alert) + Send + Sync + 'static,
    {
        self.callbacks.add(Arc::new(callback));
    }

    /// Feeds a lane's queue depth; returns the alert it fired, if any.
    pub async fn check_queue_depth(&self, lane_id: &str, depth: usize) -> Option<Alert> {
        self.check(lane_id, AlertKind::QueueDepth, depth as f64)
    }

    /// Feeds one run's latency; returns the alert it fired, if any.
    pub async fn check_latency(&self, lane_id: &str, latency_ms: f64) -> Option<Alert> {
        self.check(lane_id, AlertKind::Latency, latency_ms)
    }

    /// Whether an alert of `kind` is raised for `lane_id` (fired and not yet recovered).
    pub fn is_raised(&self, lane_id: &str, kind: AlertKind) -> bool {
        self.states
            .lock()
            .get(&(Box::<str>::from(lane_id), kind))
            .is_some_and(RuleState::is_raised)
    }

    fn set_rules(&self, change: impl FnOnce(&mut Rules)) {
        let mut rules = self.rules.write();
        change(&mut rules);
        for (slot, rule) in self.warning.iter().zip([rules.depth, rules.latency]) {
            let warning = rule.map_or(f64::INFINITY, |r| r.warning);
            slot.store(warning.to_bits(), Ordering::Release);
        }
    }

    fn check(&self, lane: &str, kind: AlertKind, value: f64) -> Option<Alert> {
        let slot = match kind {
            AlertKind::QueueDepth => 0,
            AlertKind::Latency => 1,
            AlertKind::TotalPending | AlertKind::TotalActive => return None,
        };
        // Fast path, without a lock: nothing raised anywhere and this value raises nothing.
        let warning = f64::from_bits(self.warning[slot].load(Ordering::Acquire));
        if value < warning && self.raised.load(Ordering::Acquire) == 0 {
            return None;
        }
        let rules = *self.rules.read();
        let rule = if slot == 0 {
            rules.depth?
        } else {
            rules.latency?
        };
        if !value.is_finite() {
            return None;
        }
        let fired = {
            let mut states = self.states.lock();
            let state = states.entry((lane.into(), kind)).or_default();
            let was_raised = state.is_raised();
            let fired = state.evaluate(&rule, value, Instant::now());
            match (was_raised, state.is_raised()) {
                (false, true) => {
                    self.raised.fetch_add(1, Ordering::AcqRel);
                }
                (true, false) => {
                    self.raised.fetch_sub(1, Ordering::AcqRel);
                }
                _ => {}
            }
            fired
        };
        let (level, threshold) = fired?;
        let alert = Alert::new(level, kind, lane, value, threshold);
        self.callbacks.fire(&alert);
        Some(alert)
    }
}

impl Observer for AlertManager {
    fn on_finish(&self, command: &CommandInfo<'_>, outcome: RunOutcome<'_>, elapsed: Duration) {
        if !matches!(outcome, RunOutcome::Cancelled) {
            self.check(
                command.lane,
                AlertKind::Latency,
                elapsed.as_secs_f64() * 1000.0,
            );
        }
    }

    fn on_lane_depth(&self, lane: &str, pending: usize, _active: usize) {
        self.check(lane, AlertKind::QueueDepth, pending as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            warning: 10.0,
            critical: 20.0,
            recovery: 5.0,
            window: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_raised_alert_fires_again_only_after_recovery() {
        let rule = rule();
        let mut state = RuleState::default();
        let now = Instant::now;
        assert_eq!(state.evaluate(&rule, 9.0, now()), None);
        assert_eq!(
            state.evaluate(&rule, 10.0, now()),
            Some((AlertLevel::Warning, 10.0))
        );
        // Oscillating around the threshold: no storm.
        for v in [9.0, 11.0, 6.0, 12.0, 10.0] {
            assert_eq!(state.evaluate(&rule, v, now()), None);
        }
        assert_eq!(
            state.evaluate(&rule, 25.0, now()),
            Some((AlertLevel::Critical, 20.0))
        );
        assert_eq!(state.evaluate(&rule, 12.0, now()), None);
        assert_eq!(state.evaluate(&rule, 25.0, now()), None);
        // Below recovery, but not for the whole window.
        assert_eq!(state.evaluate(&rule, 1.0, now()), None);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(state.evaluate(&rule, 2.0, now()), None);
        // A value above recovery restarts the window.
        assert_eq!(state.evaluate(&rule, 7.0, now()), None);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(state.evaluate(&rule, 1.0, now()), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            state.evaluate(&rule, 1.0, now()),
            Some((AlertLevel::Info, 5.0))
        );
        assert!(!state.is_raised());
        assert_eq!(
            state.evaluate(&rule, 11.0, now()),
            Some((AlertLevel::Warning, 10.0))
        );
    }

    proptest::proptest! {
        /// Whatever the values and their timing: levels only rise until an `Info`
        /// recovery, so the same level never fires twice in a row without recovering.
        #[test]
        fn no_level_fires_twice_without_a_recovery(
            steps in proptest::collection::vec((0.0f64..30.0, 0u64..4_000), 1..200)
        ) {
            let rule = rule();
            let mut state = RuleState::default();
            let start = std::time::Instant::now();
            let mut now = Instant::from_std(start);
            let mut last: Option<AlertLevel> = None;
            for (value, wait_ms) in steps {
                now += Duration::from_millis(wait_ms);
                if let Some((level, _)) = state.evaluate(&rule, value, now) {
                    match (last, level) {
                        (None | Some(AlertLevel::Info), AlertLevel::Info) => {
                            proptest::prop_assert!(false, "recovered without being raised")
                        }
                        (Some(prev), AlertLevel::Warning | AlertLevel::Critical)
                            if prev != AlertLevel::Info =>
                        {
                            proptest::prop_assert!(level > prev, "{:?} after {:?}", level, prev)
                        }
                        _ => {}
                    }
                    last = Some(level);
                }
                proptest::prop_assert_eq!(
                    state.is_raised(),
                    matches!(last, Some(AlertLevel::Warning | AlertLevel::Critical))
                );
            }
        }
    }

    #[test]
    fn configs_are_validated() {
        assert!(QueueDepthAlertConfig::new(0, 5).is_err());
        assert!(QueueDepthAlertConfig::new(6, 5).is_err());
        assert!(
            QueueDepthAlertConfig::new(5, 6)
                .unwrap()
                .with_recovery_threshold(5)
                .validate()
                .is_err()
        );
        assert!(LatencyAlertConfig::new(f64::NAN, 5.0).is_err());
        assert!(LatencyAlertConfig::new(10.0, 5.0).is_err());
        assert!(LatencyAlertConfig::new(-1.0, 5.0).is_err());
        let err = AlertManager::try_with_latency_alerts(500.0, 100.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: latency alerts: warning_threshold_ms (500) is above critical_threshold_ms (100)"
        );
        assert!(QueueDepthAlertConfig::disabled().validate().is_ok());
    }

    #[tokio::test]
    async fn a_rejected_config_changes_nothing() {
        let alerts = AlertManager::with_queue_depth_alerts(10, 20);
        let bad = QueueDepthAlertConfig {
            warning_threshold: 30,
            ..QueueDepthAlertConfig::new(10, 20).unwrap()
        };
        assert!(alerts.set_queue_depth_config(bad).await.is_err());
        assert_eq!(
            alerts.check_queue_depth("a", 10).await.map(|a| a.level),
            Some(AlertLevel::Warning)
        );
    }

    #[tokio::test]
    async fn lanes_and_kinds_are_independent() {
        let alerts = AlertManager::with_configs(
            QueueDepthAlertConfig::new(10, 20).unwrap(),
            LatencyAlertConfig::new(100.0, 500.0).unwrap(),
        )
        .unwrap();
        assert!(alerts.check_queue_depth("a", 10).await.is_some());
        assert!(alerts.check_queue_depth("b", 10).await.is_some());
        let latency = alerts.check_latency("a", 600.0).await.unwrap();
        assert_eq!(latency.level, AlertLevel::Critical);
        assert_eq!(latency.kind, AlertKind::Latency);
        assert_eq!(
            latency.message,
            "lane 'a' latency (ms) 600 reached the critical threshold 500"
        );
        assert!(alerts.is_raised("a", AlertKind::QueueDepth));
        assert!(!alerts.is_raised("c", AlertKind::QueueDepth));
    }
}
