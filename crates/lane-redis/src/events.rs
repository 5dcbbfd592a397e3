//! The queue's events, seen from any process: the scripts append what happens to each
//! command to the stream `{prefix}:events` (one stream entry per script run, one JSON
//! array per event), and a reader task per [`RedisQueue`](crate::RedisQueue) that has
//! subscribers turns them into the same [`LaneEvent`]s the in-process queue publishes.
//!
//! A stream entry's field `e` is a list of lines: each event is a code line, then its
//! fields one a line (lanes and command types hold no newline, and the JSON is written
//! without one): `S` submitted (id, lane, type), `B` started (id, lane, type, attempt),
//! `C` completed (id, lane, run µs), `R` retry (id, lane, next attempt, delay µs, error
//! JSON), `F` failed for good and dead-lettered (id, lane, type, error JSON), `X`
//! cancelled (id, lane, was running 0/1, error JSON), `P` progress (id, lane, progress
//! JSON, written by the worker), `A` abandoned: answered while its handler goes on and
//! keeps the lane slot (id, lane, error JSON), `E` expired: not started by its start-by
//! deadline (id, lane, type, the deadline in ms since the Unix epoch), `D` deduplicated:
//! a submit found its idempotency key held by a live command and queued nothing (the
//! command's id, lane and type, the key as a JSON string: a key may hold any character),
//! `G` a recurring schedule fired an instant (schedule name, lane, command id, instant
//! ms), `K` a schedule skipped instants (name, first and last instant ms, reason; names
//! and reasons hold no newline), `T` a rate limit held a lane's next start back (lane,
//! group or empty, whose limit: `lane` or `group`, until in ms on the Redis clock). Plain lines rather than JSON arrays keep the scripts'
//! cost per event to a string concatenation.
//!
//! The reader starts at the first [`subscribe`](crate::RedisQueue::subscribe), from the
//! instant of that call on the Redis server's clock (the offset to the local clock is
//! measured at connect), so a subscriber sees what happens after it subscribed, as in
//! process. It blocks on the stream (XREAD BLOCK) on a connection of its own and
//! reconnects with backoff, resuming after the last entry it read: events written while
//! it was disconnected are delivered late, not lost, as long as the stream still holds
//! them (about 10,000 script runs' worth).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lane_core::event::keys;
use lane_core::{EventEmitter, LaneEvent};
use redis::Value as RedisValue;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::connection::{Conn, Target, connect_listener};
use crate::wire::decode_error;

/// About how many entries the stream keeps (the scripts' `EVENTS_KEPT`).
pub(crate) const EVENTS_KEPT: usize = 10_000;
/// How long one XREAD blocks before the reader checks that its queue still exists.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Stream entries taken per XREAD.
const READ_COUNT: usize = 256;

/// The stream id just before the current instant on the Redis clock, given the clock
/// offset: XREAD returns entries after it, so an event written in this very millisecond
/// is included. The offset is only as good as the round trip it was measured over, so
/// the start goes back by that much too: a subscriber may see an event from a moment
/// before it subscribed, never miss one after.
pub(crate) fn stream_id_now(offset_ms: i64, uncertainty_ms: i64) -> String {
    let local = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let start = local
        .saturating_add(offset_ms)
        .saturating_sub(uncertainty_ms.max(0))
        .saturating_sub(1);
    if start < 0 {
        return "0-0".into();
    }
    format!("{start}-{}", u64::MAX)
}

/// Reads the stream from `from` and publishes on `events` until `stop` fires or the
/// queue is gone.
pub(crate) async fn run_reader(
    target: Arc<Target>,
    key: String,
    mut from: String,
    events: EventEmitter,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conn: Option<Conn> = None;
    loop {
        let current = match &mut conn {
            Some(conn) => conn,
            None => match connect_listener(&target, READ_BLOCK, &mut stop, "event reader", || {})
                .await
            {
                Some(connected) => conn.insert(connected),
                None => return,
            },
        };
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&key)
            .arg(&from);
        let read = tokio::select! {
            _ = &mut stop => return,
            read = xread.query_async::<RedisValue>(current) => read,
        };
        match read {
            Ok(reply) => {
                for (id, batch) in stream_entries(reply) {
                    let timestamp = id
                        .split_once('-')
                        .and_then(|(ms, _)| ms.parse().ok())
                        .unwrap_or(0);
                    for event in decode_batch(&batch, timestamp) {
                        events.emit(event);
                    }
                    from = id;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "event reader lost its Redis connection; reconnecting");
                conn = None;
            }
        }
    }
}

/// The `(id, field e)` pairs of an XREAD reply (nil when the block timed out).
fn stream_entries(reply: RedisValue) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let streams = match reply {
        RedisValue::Array(streams) => streams,
        RedisValue::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        _ => return out,
    };
    for stream in streams {
        // RESP2: [key, entries]; RESP3 map values are the entries themselves.
        let entries = match stream {
            RedisValue::Array(mut parts) if parts.len() == 2 => parts.pop(),
            other => Some(other),
        };
        let Some(RedisValue::Array(entries)) = entries else {
            continue;
        };
        for entry in entries {
            let RedisValue::Array(mut parts) = entry else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = parts.pop();
            let id = parts.pop().and_then(|id| text(&id));
            let batch = match fields {
                Some(RedisValue::Array(fields)) => fields.get(1).and_then(text),
                Some(RedisValue::Map(fields)) => fields.first().and_then(|(_, v)| text(v)),
                _ => None,
            };
            if let (Some(id), Some(batch)) = (id, batch) {
                out.push((id, batch));
            }
        }
    }
    out
}

fn text(value: &RedisValue) -> Option<String> {
    match value {
        RedisValue::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        RedisValue::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// How many field lines follow each code line.
fn field_count(code: &str) -> Option<usize> {
    Some(match code {
        "S" | "C" | "P" | "A" => 3,
        "B" | "F" | "X" | "E" | "D" | "G" | "K" | "T" => 4,
        "R" => 5,
        _ => return None,
    })
}

/// The events of one stream entry, as the in-process queue would have published them
/// (a command that failed for good is two events: its failure, then its dead letter).
/// A batch that does not parse is dropped from the first line that does not.
fn decode_batch(batch: &str, timestamp: u64) -> Vec<LaneEvent> {
    let mut out = Vec::new();
    let mut lines = batch.split('\n');
    while let Some(code) = lines.next() {
        let Some(count) = field_count(code) else {
            tracing::warn!(
                code,
                "ignoring the rest of an event batch with an unknown code"
            );
            break;
        };
        let fields: Vec<&str> = lines.by_ref().take(count).collect();
        if fields.len() < count {
            tracing::warn!(code, "ignoring a truncated event");
            break;
        }
        let Some((key, payload, dead_letter)) = decode_fields(code, &fields) else {
            tracing::warn!(code, ?fields, "ignoring a malformed event");
            continue;
        };
        out.push(LaneEvent {
            key: key.into(),
            timestamp,
            payload,
        });
        if let Some(letter) = dead_letter {
            out.push(LaneEvent {
                key: keys::COMMAND_DEAD_LETTERED.into(),
                timestamp,
                payload: letter,
            });
        }
    }
    out
}

/// An event's key and payload, and the payload of the dead letter that follows it.
type Decoded = (&'static str, Value, Option<Value>);

fn number(text: &str) -> Option<Value> {
    serde_json::from_str::<serde_json::Number>(text)
        .ok()
        .map(Value::Number)
}

fn micros_to_ms(text: &str) -> f64 {
    text.parse::<f64>().unwrap_or(0.0) / 1000.0
}

fn decode_fields(code: &str, fields: &[&str]) -> Option<Decoded> {
    // Schedule events start with the schedule's name, not a command id.
    match (code, fields) {
        ("G", [name, lane, id, instant]) => {
            return Some((
                keys::SCHEDULE_FIRED,
                json!({
                    "schedule": name, "lane_id": lane,
                    "command_id": id.parse::<u64>().ok()?,
                    "instant_ms": instant.parse::<u64>().ok()?,
                }),
                None,
            ));
        }
        ("K", [name, from, until, reason]) => {
            return Some((
                keys::SCHEDULE_SKIPPED,
                json!({
                    "schedule": name,
                    "from_ms": from.parse::<u64>().ok()?,
                    "until_ms": until.parse::<u64>().ok()?,
                    "reason": reason,
                }),
                None,
            ));
        }
        ("T", [lane, group, limit, until]) => {
            let group = (!group.is_empty()).then_some(*group);
            return Some((
                keys::LANE_THROTTLED,
                json!({
                    "lane_id": lane, "group": group, "limit": limit,
                    "until_ms": until.parse::<u64>().ok()?,
                }),
                None,
            ));
        }
        ("G" | "K" | "T", _) => return None,
        _ => {}
    }
    let id: u64 = fields.first()?.parse().ok()?;
    let lane = *fields.get(1)?;
    let field = |n: usize| fields.get(n).copied().unwrap_or_default();
    let (key, payload) = match code {
        "S" => (
            keys::COMMAND_SUBMITTED,
            json!({ "lane_id": lane, "command_id": id, "command_type": field(2) }),
        ),
        "B" => (
            keys::COMMAND_STARTED,
            json!({
                "lane_id": lane, "command_id": id, "command_type": field(2),
                "attempt": number(field(3))?,
            }),
        ),
        "C" => (
            keys::COMMAND_COMPLETED,
            json!({ "lane_id": lane, "command_id": id, "duration_ms": micros_to_ms(field(2)) }),
        ),
        "R" => (
            keys::COMMAND_RETRY,
            json!({
                "lane_id": lane, "command_id": id, "attempt": number(field(2))?,
                "delay_ms": micros_to_ms(field(3)),
                "error": decode_error(field(4)).to_string(),
            }),
        ),
        "F" => {
            let error = decode_error(field(3));
            let key = if error.is_timeout() {
                keys::COMMAND_TIMEOUT
            } else {
                keys::COMMAND_FAILED
            };
            let letter = json!({
                "lane_id": lane, "command_id": id, "command_type": field(2),
                "error": error.to_string(),
            });
            return Some((
                key,
                json!({ "lane_id": lane, "command_id": id, "error": error.to_string() }),
                Some(letter),
            ));
        }
        "X" => {
            let reason = match decode_error(field(3)) {
                lane_core::LaneError::Cancelled(reason) => reason,
                other => other.to_string(),
            };
            (
                keys::COMMAND_CANCELLED,
                json!({
                    "lane_id": lane, "command_id": id,
                    "was_running": field(2) == "1", "reason": reason,
                }),
            )
        }
        "A" => {
            let reason = match decode_error(field(2)) {
                lane_core::LaneError::Cancelled(reason) => reason,
                other => other.to_string(),
            };
            (
                keys::COMMAND_ABANDONED,
                json!({ "lane_id": lane, "command_id": id, "reason": reason }),
            )
        }
        "E" => (
            keys::COMMAND_EXPIRED,
            json!({
                "lane_id": lane, "command_id": id, "command_type": field(2),
                "start_by_ms": number(field(3))?,
            }),
        ),
        "D" => (
            keys::COMMAND_DEDUPLICATED,
            json!({
                "lane_id": lane, "command_id": id, "command_type": field(2),
                "key": serde_json::from_str::<String>(field(3)).ok()?,
            }),
        ),
        "P" => (
            keys::COMMAND_PROGRESS,
            json!({
                "lane_id": lane, "command_id": id,
                "progress": serde_json::from_str::<Value>(field(2)).ok()?,
            }),
        ),
        _ => return None,
    };
    Some((key, payload, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_starts_just_before_this_millisecond_less_the_uncertainty() {
        let id = stream_id_now(0, 3);
        let (ms, seq) = id.split_once('-').unwrap();
        assert_eq!(
            seq,
            u64::MAX.to_string(),
            "so that <ms>-0 of this millisecond follows"
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let ms: i64 = ms.parse().unwrap();
        assert!((now - 10..=now - 4).contains(&ms), "{ms} vs {now}");
        assert_eq!(stream_id_now(i64::MIN, 0), "0-0");
    }

    #[test]
    fn each_code_becomes_the_in_process_event() {
        let batch = [
            "S\n7\njobs\nemail",
            "B\n7\njobs\nemail\n2",
            "C\n7\njobs\n1500",
            "R\n8\njobs\n2\n20000\n{\"kind\":\"failed\",\"message\":\"nope\"}",
            "F\n9\njobs\nemail\n{\"kind\":\"timeout\",\"message\":\"\",\"timeout_ms\":100}",
            "X\n10\njobs\n0\n{\"kind\":\"cancelled\",\"message\":\"by request\"}",
            "P\n11\njobs\n{\"step\":1}",
            "A\n12\njobs\n{\"kind\":\"cancelled\",\"message\":\"after the grace\"}",
            "E\n13\njobs\nemail\n1700000000000",
            "D\n14\njobs\nemail\n\"order-7\\nline two \\/ ok\"",
            "T\njobs\n\nlane\n1700000000000",
            "T\njobs\nsession-1\ngroup\n1700000000001",
        ]
        .join("\n");
        let events = decode_batch(&batch, 5);
        let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                keys::COMMAND_SUBMITTED,
                keys::COMMAND_STARTED,
                keys::COMMAND_COMPLETED,
                keys::COMMAND_RETRY,
                keys::COMMAND_TIMEOUT,
                keys::COMMAND_DEAD_LETTERED,
                keys::COMMAND_CANCELLED,
                keys::COMMAND_PROGRESS,
                keys::COMMAND_ABANDONED,
                keys::COMMAND_EXPIRED,
                keys::COMMAND_DEDUPLICATED,
                keys::LANE_THROTTLED,
                keys::LANE_THROTTLED,
            ]
        );
        assert_eq!(
            events[11].payload,
            json!({
                "lane_id": "jobs", "group": null, "limit": "lane",
                "until_ms": 1_700_000_000_000_u64,
            })
        );
        assert_eq!(
            events[12].payload,
            json!({
                "lane_id": "jobs", "group": "session-1", "limit": "group",
                "until_ms": 1_700_000_000_001_u64,
            })
        );
        assert_eq!(
            events[10].payload,
            json!({
                "lane_id": "jobs", "command_id": 14, "command_type": "email",
                "key": "order-7\nline two / ok",
            })
        );
        assert_eq!(
            events[9].payload,
            json!({
                "lane_id": "jobs", "command_id": 13, "command_type": "email",
                "start_by_ms": 1_700_000_000_000_u64,
            })
        );
        assert_eq!(
            events[8].payload,
            json!({"lane_id": "jobs", "command_id": 12, "reason": "after the grace"})
        );
        assert!(events.iter().all(|e| e.timestamp == 5));
        assert_eq!(
            events[1].payload,
            json!({"lane_id": "jobs", "command_id": 7, "command_type": "email", "attempt": 2})
        );
        assert_eq!(events[2].payload["duration_ms"], json!(1.5));
        assert_eq!(events[3].payload["delay_ms"], json!(20.0));
        assert_eq!(events[3].payload["error"], json!("command failed: nope"));
        assert_eq!(events[5].payload["command_type"], json!("email"));
        assert_eq!(events[6].payload["was_running"], json!(false));
        assert_eq!(events[6].payload["reason"], json!("by request"));
        assert_eq!(events[7].payload["progress"], json!({"step": 1}));
    }

    #[test]
    fn schedule_events_carry_the_in_process_payloads() {
        let batch = [
            "K\nnightly report\n1000\n3000\nmissed",
            "G\nnightly report\njobs\n42\n4000",
        ]
        .join("\n");
        let events = decode_batch(&batch, 9);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].key, keys::SCHEDULE_SKIPPED);
        assert_eq!(
            events[0].payload,
            json!({"schedule": "nightly report", "from_ms": 1000, "until_ms": 3000, "reason": "missed"})
        );
        assert_eq!(events[1].key, keys::SCHEDULE_FIRED);
        assert_eq!(
            events[1].payload,
            json!({"schedule": "nightly report", "lane_id": "jobs", "command_id": 42, "instant_ms": 4000})
        );
        assert!(decode_batch("G\nn\njobs\nx\n1", 0).is_empty(), "not an id");
    }

    #[test]
    fn a_damaged_batch_yields_what_came_before_the_damage() {
        let events = decode_batch("S\n1\nl\nt\n?\n2\nl", 0);
        assert_eq!(events.len(), 1);
        assert!(decode_batch("C\n1", 0).is_empty(), "truncated");
        assert!(decode_batch("C\nx\nl\n5", 0).is_empty(), "not an id");
    }
}
