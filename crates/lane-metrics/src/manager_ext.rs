//! [`ObservabilityExt`]: the 0.3 API's `QueueManager::metrics()` and `alerts()`.

use lane_core::QueueManager;

use crate::QueueMetrics;
#[cfg(feature = "monitoring")]
use {crate::alerts::AlertManager, std::sync::Arc};

/// The metrics and alert manager a [`QueueManager`] was built with
/// ([`QueueManagerBuilder::with_metrics`](lane_core::QueueManagerBuilder::with_metrics),
/// [`with_alerts`](lane_core::QueueManagerBuilder::with_alerts)).
///
/// ```
/// use a3s_lane::{EventEmitter, ObservabilityExt, QueueManagerBuilder, QueueMetrics};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> a3s_lane::Result<()> {
/// let manager = QueueManagerBuilder::new(EventEmitter::new(100))
///     .with_default_lanes()
///     .with_metrics(QueueMetrics::local())
///     .build()
///     .await?;
/// let metrics = manager.metrics().expect("built with metrics");
/// assert_eq!(metrics.snapshot().await.counters["lane.commands.submitted"], 0);
/// assert!(manager.alerts().is_none());
/// # Ok(()) }
/// ```
pub trait ObservabilityExt {
    /// The metrics collector, if the manager was built with one.
    fn metrics(&self) -> Option<QueueMetrics>;
    /// The alert manager, if the manager was built with one.
    #[cfg(feature = "monitoring")]
    fn alerts(&self) -> Option<Arc<AlertManager>>;
}

impl ObservabilityExt for QueueManager {
    fn metrics(&self) -> Option<QueueMetrics> {
        self.observer::<QueueMetrics>()
            .map(|metrics| QueueMetrics::clone(&metrics))
    }

    #[cfg(feature = "monitoring")]
    fn alerts(&self) -> Option<Arc<AlertManager>> {
        self.observer::<AlertManager>()
    }
}
