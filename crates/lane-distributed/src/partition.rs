//! Partitioning: spreading commands over a fixed number of partitions (one per worker
//! task, core or machine).
//!
//! [`PartitionConfig`] names the number of partitions and a [`PartitionStrategy`];
//! [`PartitionRouter`] applies it. The hash strategy uses [`stable_hash`] (64-bit FNV-1a)
//! and a jump consistent hash, both fixed algorithms: the same key lands on the same
//! partition in every process, on every machine and with every compiler version, and
//! growing from `n` to `n + 1` partitions moves only the keys that land on the new one.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lane_core::{LaneError, Result};

use crate::envelope::CommandEnvelope;
use crate::hash::stable_hash;

/// Identifies a partition: `0..num_partitions`.
pub type PartitionId = usize;

/// A custom partitioning rule.
///
/// ```
/// use a3s_lane::{CommandEnvelope, PartitionConfig, PartitionId, Partitioner};
///
/// /// Control commands on partition 0, everything else spread over the rest.
/// #[derive(Debug)]
/// struct ControlFirst;
///
/// impl Partitioner for ControlFirst {
///     fn partition(&self, envelope: &CommandEnvelope, partitions: usize) -> PartitionId {
///         if envelope.lane_id == "control" || partitions == 1 {
///             0
///         } else {
///             1 + a3s_lane::hash_partition(&envelope.id, partitions - 1)
///         }
///     }
/// }
///
/// let config = PartitionConfig::custom(4, ControlFirst);
/// let router = config.router().unwrap();
/// let envelope = CommandEnvelope::new("control", "pause", serde_json::json!({}));
/// assert_eq!(router.route(&envelope).unwrap(), 0);
/// ```
pub trait Partitioner: Send + Sync + fmt::Debug + 'static {
    /// The partition for `envelope`, below `partitions` (at least 1).
    fn partition(&self, envelope: &CommandEnvelope, partitions: usize) -> PartitionId;
}

fn _partitioner_is_dyn_compatible(_: Arc<dyn Partitioner>) {}

/// How commands are spread over partitions.
#[derive(Debug, Clone)]
pub enum PartitionStrategy {
    /// A single partition (`num_partitions` must be 1).
    None,
    /// Each command goes to the next partition in turn.
    RoundRobin,
    /// By a stable hash of the envelope's `partition_key`, or of its `command_type` when
    /// it has none: the same key always lands on the same partition.
    Hash,
    /// A rule of your own.
    Custom(Arc<dyn Partitioner>),
}

/// The number of partitions and how commands are spread over them.
///
/// ```
/// use a3s_lane::PartitionConfig;
///
/// // Round-robin partitioning across 8 workers
/// let config = PartitionConfig::round_robin(8);
/// // Hash-based partitioning (same command types go to same partition)
/// let config = PartitionConfig::hash(8);
/// // One partition per CPU core
/// let config = PartitionConfig::auto();
/// println!("{} partitions", config.num_partitions);
/// ```
///
/// Zero partitions is rejected with [`LaneError::ConfigError`] by
/// [`PartitionConfig::validate`], [`PartitionConfig::router`] and
/// [`LocalDistributedQueue::new`](crate::LocalDistributedQueue::new).
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    /// How many partitions.
    pub num_partitions: usize,
    /// How commands are spread over them.
    pub strategy: PartitionStrategy,
}

impl PartitionConfig {
    /// `num_partitions` partitions with `strategy`.
    pub fn new(num_partitions: usize, strategy: PartitionStrategy) -> Self {
        Self {
            num_partitions,
            strategy,
        }
    }

    /// Round-robin over `n` partitions.
    pub fn round_robin(n: usize) -> Self {
        Self::new(n, PartitionStrategy::RoundRobin)
    }

    /// Stable hash over `n` partitions (see [`PartitionStrategy::Hash`]).
    pub fn hash(n: usize) -> Self {
        Self::new(n, PartitionStrategy::Hash)
    }

    /// A single partition.
    pub fn none() -> Self {
        Self::new(1, PartitionStrategy::None)
    }

    /// Round-robin over one partition per CPU core the process may use.
    pub fn auto() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::round_robin(cores)
    }

    /// `n` partitions chosen by `partitioner`.
    pub fn custom(n: usize, partitioner: impl Partitioner) -> Self {
        Self::new(n, PartitionStrategy::Custom(Arc::new(partitioner)))
    }

    /// Checks the values; the error says what is wrong and what to do instead.
    pub fn validate(&self) -> Result<()> {
        if self.num_partitions == 0 {
            return Err(LaneError::ConfigError(
                "num_partitions must be at least 1; use PartitionConfig::none() for a single \
                 partition or PartitionConfig::auto() for one per CPU core"
                    .into(),
            ));
        }
        if matches!(self.strategy, PartitionStrategy::None) && self.num_partitions != 1 {
            return Err(LaneError::ConfigError(format!(
                "PartitionStrategy::None means a single partition, but num_partitions is {}; \
                 use PartitionConfig::round_robin({0}) or hash({0}) to spread over several",
                self.num_partitions
            )));
        }
        Ok(())
    }

    /// A router applying this config, or [`LaneError::ConfigError`] if it is invalid.
    pub fn router(&self) -> Result<PartitionRouter> {
        self.validate()?;
        Ok(PartitionRouter {
            config: self.clone(),
            next: AtomicUsize::new(0),
        })
    }
}

/// Applies a [`PartitionConfig`]: picks the partition of each envelope.
#[derive(Debug)]
pub struct PartitionRouter {
    config: PartitionConfig,
    next: AtomicUsize,
}

impl PartitionRouter {
    /// The number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.config.num_partitions
    }

    /// The config this router applies.
    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// The partition for `envelope`. Fails only when a custom partitioner answers a
    /// partition that does not exist.
    pub fn route(&self, envelope: &CommandEnvelope) -> Result<PartitionId> {
        let partitions = self.config.num_partitions;
        match &self.config.strategy {
            PartitionStrategy::None => Ok(0),
            PartitionStrategy::RoundRobin => {
                Ok(self.next.fetch_add(1, Ordering::Relaxed) % partitions)
            }
            PartitionStrategy::Hash => Ok(hash_partition(envelope.hash_key(), partitions)),
            PartitionStrategy::Custom(partitioner) => {
                let partition = partitioner.partition(envelope, partitions);
                if partition < partitions {
                    Ok(partition)
                } else {
                    Err(LaneError::ConfigError(format!(
                        "custom partitioner {partitioner:?} chose partition {partition} for \
                         command '{}', but there are only {partitions} (0..{partitions})",
                        envelope.id
                    )))
                }
            }
        }
    }
}

/// The partition of `key` among `partitions`: a jump consistent hash (Lamping and Veach)
/// of [`stable_hash`]. Growing to `partitions + 1` moves only keys to the new partition.
/// `partitions` of 0 is treated as 1.
pub fn hash_partition(key: &str, partitions: usize) -> PartitionId {
    let buckets = partitions.max(1) as i64;
    let mut key = stable_hash(key.as_bytes());
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as PartitionId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_partitions_is_a_config_error() {
        for config in [
            PartitionConfig::round_robin(0),
            PartitionConfig::hash(0),
            PartitionConfig::new(0, PartitionStrategy::None),
        ] {
            let error = config.router().unwrap_err();
            assert!(matches!(error, LaneError::ConfigError(_)), "{error}");
        }
        let error = PartitionConfig::new(3, PartitionStrategy::None)
            .validate()
            .unwrap_err();
        assert!(error.to_string().contains("round_robin(3)"), "{error}");
    }

    #[test]
    fn auto_has_one_partition_per_core() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(PartitionConfig::auto().num_partitions, cores);
    }

    #[test]
    fn round_robin_takes_turns() {
        let router = PartitionConfig::round_robin(3).router().unwrap();
        let envelope = CommandEnvelope::new("q", "t", serde_json::Value::Null);
        let picks: Vec<_> = (0..7).map(|_| router.route(&envelope).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn hash_partitions_are_pinned_across_versions() {
        // Golden values: changing them breaks routing between old and new deployments.
        let got: Vec<_> = ["fetch_data", "user:42", "order-7", ""]
            .iter()
            .map(|key| hash_partition(key, 8))
            .collect();
        assert_eq!(got, GOLDEN);
    }

    // Computed independently (a Python transcription of FNV-1a and jump hash).
    const GOLDEN: [PartitionId; 4] = [4, 1, 6, 1];

    #[test]
    fn a_custom_partitioner_answering_out_of_range_is_an_error() {
        #[derive(Debug)]
        struct Seven;
        impl Partitioner for Seven {
            fn partition(&self, _: &CommandEnvelope, _: usize) -> PartitionId {
                7
            }
        }
        let router = PartitionConfig::custom(4, Seven).router().unwrap();
        let error = router
            .route(&CommandEnvelope::new("q", "t", serde_json::Value::Null))
            .unwrap_err();
        assert!(error.to_string().contains("only 4"), "{error}");
    }
}
