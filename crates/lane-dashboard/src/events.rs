//! `/api/events`: server-sent events from the queue's event subscription.
//!
//! One subscription per connected page. Events are batched: when one arrives, the stream
//! collects the others of the next `batch_interval`, then sends one `batch` message with
//! per-lane counts by kind, the last few events (key, lane, id and type only: no payload,
//! no error text), how many events this subscriber missed, and fresh counts (from
//! `stats`) of the lanes that moved and the lanes the page shows. While nothing happens it
//! sends a `stats` message every `idle_refresh` (a timed pause ending or a rate limit
//! lifting emit no event).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use lane_core::{EventStream, LaneEvent, QueueStats, event_keys};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::AppState;
use crate::api::ApiQuery;

/// The most lanes a message carries counts for.
const MAX_LANES_PER_MESSAGE: usize = 500;
/// The most recent events a batch lists.
const RECENT: usize = 25;

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    /// Comma-separated lane ids whose counts every message carries (the lanes on screen).
    #[serde(default)]
    lanes: Option<String>,
}

struct Pump {
    state: AppState,
    events: EventStream,
    watched: Vec<String>,
    started: bool,
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
        events: state.client.subscribe(),
        state,
        watched,
        started: false,
    };
    let stream = futures_util::stream::unfold(pump, |mut pump| async move {
        let event = pump.next_message().await?;
        Some((Ok(event), pump))
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
        if !self.started {
            self.started = true;
            let stats = self.state.client.stats().await.ok();
            return Some(self.message("stats", json!({}), &BTreeSet::new(), stats));
        }
        let idle = self.state.config.idle_refresh();
        let first = match tokio::time::timeout(idle, self.events.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => return None,
            Err(_) => {
                let stats = self.state.client.stats().await.ok();
                return Some(self.message("stats", json!({}), &BTreeSet::new(), stats));
            }
        };
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
            match tokio::time::timeout_at(deadline, self.events.next()).await {
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
