//! `/api/events`: server-sent events from the queue's event subscription.
//!
//! One subscription per connected page. Events are batched: when one arrives, the stream
//! waits out the `batch_interval`, then sends one `batch` message with per-lane counts by
//! kind, the last few events (key, lane, id and type only: no payload, no error text), how
//! many events this subscriber missed, and fresh counts (from `stats`) of the lanes that
//! moved and the lanes the page shows. While nothing happens it sends a `stats` message
//! every `idle_refresh` (a timed pause ending or a rate limit lifting emit no event).
//!
//! The counts come from one of two sources:
//! - with a `QueueMetrics` configured, from its counters (the difference since the last
//!   message), and the subscription is dropped from a batch's first event until the batch
//!   is sent, so that the queue builds no event meanwhile (it builds none while nobody
//!   listens): the page costs the queue a few events and two reads per batch;
//! - without, from every event of the interval (exact too, but the queue builds and
//!   broadcasts each event while the page is open).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use lane_core::{EventStream, LaneEvent, QueueStats, event_keys};
use lane_metrics::{QueueMetrics, metric_names};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::AppState;
use crate::api::ApiQuery;

/// The most lanes a message carries counts for.
const MAX_LANES_PER_MESSAGE: usize = 500;
/// The most recent events a batch lists.
const RECENT: usize = 25;
/// The events a batch counted from metrics reads for the page's feed before it lets go of
/// the subscription.
const METRICS_MODE_RECENT: usize = 8;

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    /// Comma-separated lane ids whose counts every message carries (the lanes on screen).
    #[serde(default)]
    lanes: Option<String>,
}

/// Counts by lane and kind.
type Counts = BTreeMap<String, BTreeMap<&'static str, u64>>;

struct Pump {
    state: AppState,
    /// The subscription; in metrics mode it is dropped while a batch gathers (the queue
    /// builds no event while nobody listens) and taken again for the next one.
    events: Option<EventStream>,
    watched: Vec<String>,
    started: bool,
    /// Metrics mode: the counters of the configured `QueueMetrics` at the last message.
    baseline: Counts,
}

/// The metric counters behind each kind the stream counts.
const METRIC_KINDS: [(&str, &str); 9] = [
    ("submitted", metric_names::COMMANDS_SUBMITTED),
    ("started", metric_names::COMMANDS_STARTED),
    ("completed", metric_names::COMMANDS_COMPLETED),
    ("retried", metric_names::COMMANDS_RETRIED),
    ("dead_lettered", metric_names::COMMANDS_DEAD_LETTERED),
    ("failed", metric_names::COMMANDS_FAILED),
    ("timed_out", metric_names::COMMANDS_TIMED_OUT),
    ("cancelled", metric_names::COMMANDS_CANCELLED),
    ("expired", metric_names::COMMANDS_EXPIRED),
];

/// The counters of `metrics`, by lane and kind.
async fn counters(metrics: &QueueMetrics) -> Counts {
    let snapshot = metrics.snapshot().await;
    snapshot
        .lanes
        .iter()
        .map(|(lane, m)| {
            let per_kind = METRIC_KINDS
                .iter()
                .map(|(kind, name)| (*kind, m.counter(name)))
                .collect();
            (lane.clone(), per_kind)
        })
        .collect()
}

/// What moved from `before` to `now` (kinds and lanes that did not move left out).
fn delta(before: &Counts, now: &Counts) -> Counts {
    let mut moved = Counts::new();
    for (lane, kinds) in now {
        for (kind, value) in kinds {
            let old = before
                .get(lane)
                .and_then(|k| k.get(kind))
                .copied()
                .unwrap_or(0);
            if *value > old && (moved.len() < MAX_LANES_PER_MESSAGE || moved.contains_key(lane)) {
                moved
                    .entry(lane.clone())
                    .or_default()
                    .insert(kind, value - old);
            }
        }
    }
    moved
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let watched: Vec<String> = query
        .lanes
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(MAX_LANES_PER_MESSAGE)
        .map(str::to_owned)
        .collect();
    let pump = Pump {
        events: Some(state.client.subscribe()),
        state,
        watched,
        started: false,
        baseline: Counts::new(),
    };
    let closing = pump.state.closing.clone();
    let stream =
        futures_util::stream::unfold((pump, closing), |(mut pump, mut closing)| async move {
            let event = match closing.as_mut() {
                Some(closing) => {
                    if *closing.borrow() {
                        return None;
                    }
                    tokio::select! {
                        event = pump.next_message() => event?,
                        _ = closing.wait_for(|closed| *closed) => return None,
                    }
                }
                None => pump.next_message().await?,
            };
            Some((Ok(event), (pump, closing)))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Short names of the event kinds counted per lane.
fn kind(key: &str) -> Option<&'static str> {
    Some(match key {
        event_keys::COMMAND_SUBMITTED => "submitted",
        event_keys::COMMAND_STARTED => "started",
        event_keys::COMMAND_COMPLETED => "completed",
        event_keys::COMMAND_RETRY => "retried",
        event_keys::COMMAND_DEAD_LETTERED => "dead_lettered",
        event_keys::COMMAND_FAILED => "failed",
        event_keys::COMMAND_TIMEOUT => "timed_out",
        event_keys::COMMAND_CANCELLED => "cancelled",
        event_keys::COMMAND_EXPIRED => "expired",
        _ => return None,
    })
}

/// An event as the page sees it: no payload, no error text.
fn summary(event: &LaneEvent) -> Value {
    let field = |name: &str| event.payload.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "key": event.key,
        "ts": event.timestamp,
        "lane": field("lane_id"),
        "command_id": field("command_id"),
        "command_type": field("command_type"),
        "attempt": field("attempt"),
        "duration_ms": field("duration_ms"),
    })
}

impl Pump {
    async fn next_message(&mut self) -> Option<Event> {
        let metrics = self.state.config.metrics().cloned();
        if !self.started {
            self.started = true;
            if let Some(metrics) = &metrics {
                self.baseline = counters(metrics).await;
            }
            let stats = self.state.client.stats().await.ok();
            return Some(self.message("stats", json!({}), &BTreeSet::new(), stats));
        }
        let idle = self.state.config.idle_refresh();
        let events = self
            .events
            .get_or_insert_with(|| self.state.client.subscribe());
        let first = match tokio::time::timeout(idle, events.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => return None,
            Err(_) => {
                if let Some(metrics) = &metrics {
                    self.baseline = counters(metrics).await;
                }
                let stats = self.state.client.stats().await.ok();
                return Some(self.message("stats", json!({}), &BTreeSet::new(), stats));
            }
        };
        match metrics {
            Some(metrics) => Some(self.metrics_batch(&metrics, first).await),
            None => self.event_batch(first).await,
        }
    }

    /// A batch counted from the configured metrics: the subscription is dropped until
    /// the next batch, so the queue builds no event meanwhile.
    async fn metrics_batch(&mut self, metrics: &QueueMetrics, first: LaneEvent) -> Event {
        let deadline = Instant::now() + self.state.config.batch_interval();
        // A few events for the page's feed, then the subscription goes until next time.
        let mut recent = vec![first];
        if let Some(events) = self.events.as_mut() {
            while recent.len() < METRICS_MODE_RECENT {
                match tokio::time::timeout_at(deadline, events.next()).await {
                    Ok(Some(event)) if event.key != event_keys::EVENTS_LAGGED => {
                        recent.push(event);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        self.events = None;
        tokio::time::sleep_until(deadline).await;
        let now = counters(metrics).await;
        let counts = delta(&self.baseline, &now);
        self.baseline = now;
        let dead_letters_changed = recent
            .iter()
            .any(|e| e.key == event_keys::COMMAND_DEAD_LETTERED)
            || counts.values().any(|k| k.contains_key("dead_lettered"));
        let moved: BTreeSet<String> = counts.keys().cloned().collect();
        let stats = self.state.client.stats().await.ok();
        let body = json!({
            "counts": counts,
            "recent": recent.iter().map(summary).collect::<Vec<_>>(),
            "events": recent.len(),
            "missed": 0,
            "dead_letters_changed": dead_letters_changed,
            "interval_ms": self.state.config.batch_interval().as_millis() as u64,
            "closed": false,
            "source": "metrics",
        });
        self.message("batch", body, &moved, stats)
    }

    /// A batch counted from every event of the batch interval.
    async fn event_batch(&mut self, first: LaneEvent) -> Option<Event> {
        let events = self.events.as_mut()?;
        let deadline = Instant::now() + self.state.config.batch_interval();
        let mut counts: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
        // The last events, summarised only when the batch is sent.
        let mut recent: VecDeque<LaneEvent> = VecDeque::with_capacity(RECENT);
        let mut missed = 0u64;
        let mut total = 0u64;
        let mut dead_letters_changed = false;
        let mut closed = false;
        let mut take = |event: LaneEvent| {
            total += 1;
            if event.key == event_keys::EVENTS_LAGGED {
                missed += event
                    .payload
                    .get("missed")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                return;
            }
            if event.key == event_keys::COMMAND_DEAD_LETTERED {
                dead_letters_changed = true;
            }
            if let (Some(lane), Some(kind)) = (event.lane_id(), kind(&event.key)) {
                if !counts.contains_key(lane) && counts.len() < MAX_LANES_PER_MESSAGE {
                    counts.insert(lane.to_owned(), BTreeMap::new());
                }
                if let Some(per_lane) = counts.get_mut(lane) {
                    *per_lane.entry(kind).or_default() += 1;
                }
            }
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(event);
        };
        take(first);
        loop {
            match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(Some(event)) => take(event),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let recent: Vec<Value> = recent.iter().map(summary).collect();
        let moved: BTreeSet<String> = counts.keys().cloned().collect();
        let stats = self.state.client.stats().await.ok();
        let body = json!({
            "counts": counts,
            "recent": recent,
            "events": total,
            "missed": missed,
            "dead_letters_changed": dead_letters_changed,
            "interval_ms": self.state.config.batch_interval().as_millis() as u64,
            "closed": closed,
            "source": "events",
        });
        Some(self.message("batch", body, &moved, stats))
    }

    /// A message of `name` with `body`, plus the totals and the counts of the moved and
    /// watched lanes.
    fn message(
        &self,
        name: &str,
        mut body: Value,
        moved: &BTreeSet<String>,
        stats: Option<QueueStats>,
    ) -> Event {
        if let (Some(stats), Some(object)) = (stats, body.as_object_mut()) {
            let mut lanes = serde_json::Map::new();
            for id in moved.iter().chain(self.watched.iter()) {
                if lanes.len() >= MAX_LANES_PER_MESSAGE {
                    break;
                }
                if let Some(lane) = stats.lanes.get(id) {
                    lanes.insert(
                        id.clone(),
                        serde_json::to_value(lane).unwrap_or(Value::Null),
                    );
                }
            }
            object.insert(
                "totals".into(),
                json!({
                    "pending": stats.total_pending,
                    "active": stats.total_active,
                    "delayed": stats.total_delayed,
                    "lanes": stats.lanes.len(),
                    "paused_lanes": stats.lanes.values().filter(|l| l.paused).count(),
                }),
            );
            object.insert("lanes".into(), Value::Object(lanes));
        }
        Event::default()
            .event(name)
            .json_data(body)
            .unwrap_or_else(|_| Event::default().event(name).data("{}"))
    }
}
