//! What `new Lane(lanes, options)` takes: the lanes ([`LaneMap`]) and [`QueueOptions`],
//! turned into a [`QueueSetup`] from which the lane builds its `QueueManager`.

use std::path::PathBuf;
use std::time::Duration;

use a3s_lane::{
    DEFAULT_EVENT_CAPACITY, DEFAULT_LANES, GroupMetricsConfig, LaneConfig, LocalSyncMode,
    QueueMetrics,
};
use napi_derive::napi;

use crate::config::lane::{LaneMap, LaneSetup};
use crate::convert::{At, FromJs, Given, Js, Read, options_object};
use crate::error::JsFailure;

/// Options of the whole queue (`new Lane(lanes, options)`).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    /// A global budget: at most this many commands run at once over all lanes; each
    /// lane's `minConcurrency` slots are reserved for it, the rest is shared by priority.
    /// `null` or absent: no global budget.
    #[napi(ts_type = "number | null")]
    pub max_concurrency: Option<Js<Option<f64>>>,
    /// How many events a slow listener or iterator may fall behind before it misses
    /// some (it is told how many by a `queue.events.lagged` event): 1 to 2^24, default 1024.
    #[napi(ts_type = "number")]
    pub event_capacity: Option<Js<f64>>,
    /// Keep up to this many dead letters (commands that failed for good), oldest
    /// evicted first. Dead letters are not kept when absent.
    #[napi(ts_type = "number")]
    pub dead_letter_capacity: Option<Js<f64>>,
    /// Durable storage: commands are written to disk before `submit` accepts them and
    /// recovered by `start()` after a crash or restart.
    #[napi(ts_type = "StorageOptions")]
    pub storage: Option<Js<StorageOptions>>,
    /// Record metrics (counters, gauges, latency histograms per lane), read with
    /// `lane.metrics()` and `lane.metricsPrometheus()`. Off by default.
    #[napi(ts_type = "boolean")]
    pub metrics: Option<Js<bool>>,
    /// With `metrics`: series per group for the first this many (lane, group) pairs seen
    /// (1 to 10,000), plus the groups in `groupMetricsAlways`; later groups count in
    /// their lane's `other` bucket (`metrics().otherGroups`). Off by default.
    #[napi(ts_type = "number")]
    pub group_metrics: Option<Js<f64>>,
    /// Groups that always get a series of their own (needs `groupMetrics`).
    #[napi(ts_type = "string[]")]
    pub group_metrics_always: Option<Js<GroupKeys>>,
}

/// `groupMetricsAlways`: group keys.
#[derive(Debug, Clone)]
pub struct GroupKeys(pub Vec<String>);

impl FromJs for GroupKeys {
    const EXPECTED: &'static str = "an array of group keys like ['vip']";

    fn from_js(value: Given) -> Read<Self> {
        if !value.is_array()? {
            return value.unexpected();
        }
        Ok(value.array()?.map(Self))
    }
}

options_object!(
    QueueOptions,
    "an object of queue options",
    [
        "maxConcurrency",
        "eventCapacity",
        "deadLetterCapacity",
        "storage",
        "metrics",
        "groupMetrics",
        "groupMetricsAlways"
    ]
);

/// Durable storage in a directory (an SQLite database, `lane.db`, in WAL mode).
#[napi(object, object_to_js = false)]
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// The directory; it is created if its parent exists.
    #[napi(ts_type = "string")]
    pub path: Js<String>,
    /// `'full'` (default: fsync at every commit, survives power loss) or `'normal'`
    /// (survives a process crash, faster on slow disks).
    #[napi(ts_type = "'full' | 'normal'")]
    pub sync: Option<Js<String>>,
}

options_object!(
    StorageOptions,
    "an object like { path: './queue-data' }",
    ["path", "sync"],
    required: [("path", "the directory of the durable store")]
);

/// Durable storage settings.
#[derive(Debug, Clone)]
pub struct StorageSetup {
    /// The directory.
    pub path: PathBuf,
    /// When SQLite syncs (the core's default unless `sync` is given).
    pub sync: Option<LocalSyncMode>,
}

/// Everything `new Lane(lanes, options)` asked for, converted.
#[derive(Debug, Clone)]
pub struct QueueSetup {
    /// The lanes, in the order given.
    pub lanes: Vec<LaneSetup>,
    /// The global budget.
    pub max_concurrency: Option<usize>,
    /// The event buffer of each subscriber.
    pub event_capacity: usize,
    /// How many dead letters to keep.
    pub dead_letter_capacity: Option<usize>,
    /// Durable storage.
    pub storage: Option<StorageSetup>,
    /// The queue's metrics, with `{ metrics: true }`.
    pub metrics: Option<QueueMetrics>,
}

impl QueueSetup {
    /// Converts `new Lane(lanes, options)`; absent `lanes` means the six default lanes.
    pub fn new(
        lanes: Option<Js<LaneMap>>,
        options: Option<Js<QueueOptions>>,
    ) -> Result<Self, JsFailure> {
        let lanes = match lanes {
            None => DEFAULT_LANES
                .iter()
                .map(|(id, priority, max)| LaneSetup {
                    id: (*id).to_owned(),
                    config: LaneConfig::new(LaneConfig::default().min_concurrency, *max),
                    priority: *priority,
                })
                .collect(),
            Some(lanes) => {
                let at = At::option("lanes");
                let lanes = lanes.get(&at)?.into_lanes(&at)?;
                if lanes.is_empty() {
                    return Err(at.range_error(
                        "lanes must name at least one lane, like { query: { priority: 2, \
                         maxConcurrency: 10 } } (or leave it out for the six default lanes)",
                    ));
                }
                lanes
            }
        };
        let mut setup = Self {
            lanes,
            max_concurrency: None,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            dead_letter_capacity: None,
            storage: None,
            metrics: None,
        };
        let Some(options) = options else {
            return Ok(setup);
        };
        let at = At::option("options");
        let options = options.get(&at)?;
        setup.max_concurrency = at
            .field("maxConcurrency", options.max_concurrency, |at, max| {
                max.map(|max| at.count(max)).transpose()
            })?
            .flatten();
        if let Some(capacity) = at.field("eventCapacity", options.event_capacity, At::count)? {
            setup.event_capacity = capacity;
        }
        setup.dead_letter_capacity = at.field(
            "deadLetterCapacity",
            options.dead_letter_capacity,
            At::count,
        )?;
        setup.storage = at.field("storage", options.storage, storage)?;
        let metrics = at.field("metrics", options.metrics, |_, on| Ok(on))? == Some(true);
        let first = at.field("groupMetrics", options.group_metrics, At::count)?;
        let always = at.field(
            "groupMetricsAlways",
            options.group_metrics_always,
            |_, keys| Ok(keys.0),
        )?;
        let groups = match (first, always) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(at.key("groupMetricsAlways").type_error(
                    "options.groupMetricsAlways needs groupMetrics (how many other groups get \
                     a series)",
                ));
            }
            (Some(_), _) if !metrics => {
                return Err(at.key("groupMetrics").type_error(
                    "options.groupMetrics records into the lane's metrics; set metrics: true too",
                ));
            }
            (Some(first), always) => {
                let mut config = GroupMetricsConfig::first(first)
                    .map_err(|e| JsFailure::from(e).within("options.groupMetrics"))?;
                for group in always.unwrap_or_default() {
                    config = config
                        .with_group(group)
                        .map_err(|e| JsFailure::from(e).within("options.groupMetricsAlways"))?;
                }
                Some(config)
            }
        };
        if metrics {
            let local = QueueMetrics::local();
            setup.metrics = Some(match groups {
                Some(config) => local.with_group_metrics(config)?,
                None => local,
            });
        }
        Ok(setup)
    }

    /// Each lane's timeout, to name it when a handler's `ctx.signal` is aborted.
    pub fn timeouts(&self) -> impl Iterator<Item = (String, Duration)> + '_ {
        self.lanes
            .iter()
            .filter_map(|lane| Some((lane.id.clone(), lane.config.timeout?)))
    }
}

fn storage(at: &At<'_>, options: StorageOptions) -> Result<StorageSetup, JsFailure> {
    // An empty path would fail only when `start()` opens the store: said here instead.
    let path = at.key("path").name(options.path)?;
    let sync = at.field("sync", options.sync, |at, sync| match sync.as_str() {
        "full" => Ok(LocalSyncMode::Full),
        "normal" => Ok(LocalSyncMode::Normal),
        _ => Err(at.range_error(format!(
            "{} must be one of 'full', 'normal', got {sync:?}",
            at.path()
        ))),
    })?;
    Ok(StorageSetup {
        path: PathBuf::from(path),
        sync,
    })
}
