//! The queue's events, seen from any process: the scripts append what happens to each
//! command to the stream `{prefix}:events` (one stream entry per script run, one JSON
//! array per event), and a reader task per [`RedisQueue`](crate::RedisQueue) that has
//! subscribers turns them into the same [`LaneEvent`]s the in-process queue publishes.
//!
//! Event codes (first element of each array; the rest as listed):
//! `S` submitted (id, lane, type), `B` started (id, lane, type, attempt), `C` completed
//! (id, lane, run µs), `R` retry (id, lane, next attempt, delay µs, error JSON), `F` failed
//! for good and dead-lettered (id, lane, type, error JSON), `X` cancelled (id, lane, was
//! running 0/1, error JSON), `P` progress (id, lane, progress JSON, from the worker).
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
                    for line in batch.lines() {
                        for event in decode(line, timestamp) {
                            events.emit(event);
                        }
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

fn micros_to_ms(us: &Value) -> f64 {
    us.as_f64().unwrap_or(0.0) / 1000.0
}

/// One event line as the in-process queue would have published it (a command that
/// failed for good is two events: its failure, then its dead letter).
fn decode(line: &str, timestamp: u64) -> Vec<LaneEvent> {
    let event = |key: &str, payload: Value| LaneEvent {
        key: key.into(),
        timestamp,
        payload,
    };
    let Some((key, payload, dead_letter)) = decode_fields(line) else {
        tracing::warn!(line, "ignoring a malformed event");
        return Vec::new();
    };
    let mut out = vec![event(key, payload)];
    if let Some(letter) = dead_letter {
        out.push(event(keys::COMMAND_DEAD_LETTERED, letter));
    }
    out
}

type Decoded = (&'static str, Value, Option<Value>);

fn decode_fields(line: &str) -> Option<Decoded> {
    let Ok(Value::Array(fields)) = serde_json::from_str::<Value>(line) else {
        return None;
    };
    let code = fields.first()?.as_str()?;
    let id = fields.get(1)?.as_u64()?;
    let lane = fields.get(2)?.as_str()?;
    let arg = |n: usize| fields.get(n).cloned().unwrap_or(Value::Null);
    let error_text = |n: usize| decode_error(arg(n).as_str().unwrap_or_default());
    let (key, payload) = match code {
        "S" => (
            keys::COMMAND_SUBMITTED,
            json!({ "lane_id": lane, "command_id": id, "command_type": arg(3) }),
        ),
        "B" => (
            keys::COMMAND_STARTED,
            json!({ "lane_id": lane, "command_id": id, "command_type": arg(3), "attempt": arg(4) }),
        ),
        "C" => (
            keys::COMMAND_COMPLETED,
            json!({ "lane_id": lane, "command_id": id, "duration_ms": micros_to_ms(&arg(3)) }),
        ),
        "R" => (
            keys::COMMAND_RETRY,
            json!({
                "lane_id": lane, "command_id": id, "attempt": arg(3),
                "delay_ms": micros_to_ms(&arg(4)), "error": error_text(5).to_string(),
            }),
        ),
        "F" => {
            let error = error_text(4);
            let key = if error.is_timeout() {
                keys::COMMAND_TIMEOUT
            } else {
                keys::COMMAND_FAILED
            };
            let letter = json!({
                "lane_id": lane, "command_id": id, "command_type": arg(3),
                "error": error.to_string(),
            });
            return Some((
                key,
                json!({ "lane_id": lane, "command_id": id, "error": error.to_string() }),
                Some(letter),
            ));
        }
        "X" => {
            let reason = match error_text(4) {
                lane_core::LaneError::Cancelled(reason) => reason,
                other => other.to_string(),
            };
            (
                keys::COMMAND_CANCELLED,
                json!({
                    "lane_id": lane, "command_id": id,
                    "was_running": arg(3).as_u64() == Some(1), "reason": reason,
                }),
            )
        }
        "P" => (
            keys::COMMAND_PROGRESS,
            json!({ "lane_id": lane, "command_id": id, "progress": arg(3) }),
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
        let started = decode(r#"["B",7,"jobs","email",2]"#, 5).remove(0);
        assert_eq!(started.key, keys::COMMAND_STARTED);
        assert_eq!(started.timestamp, 5);
        assert_eq!(
            started.payload,
            json!({"lane_id": "jobs", "command_id": 7, "command_type": "email", "attempt": 2})
        );
        let done = decode(r#"["C",7,"jobs",1500]"#, 5).remove(0);
        assert_eq!(done.payload["duration_ms"], json!(1.5));
        let failed = decode(
            r#"["F",7,"jobs","email","{\"kind\":\"timeout\",\"message\":\"\",\"timeout_ms\":100}"]"#,
            5,
        );
        let keys: Vec<&str> = failed.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, [keys::COMMAND_TIMEOUT, keys::COMMAND_DEAD_LETTERED]);
        assert_eq!(failed[1].payload["command_type"], json!("email"));
        let cancelled = decode(
            r#"["X",7,"jobs",0,"{\"kind\":\"cancelled\",\"message\":\"by request\"}"]"#,
            5,
        )
        .remove(0);
        assert_eq!(cancelled.payload["was_running"], json!(false));
        assert_eq!(cancelled.payload["reason"], json!("by request"));
        assert!(decode("not json", 5).is_empty());
        assert!(decode(r#"["?",1,"l"]"#, 5).is_empty());
    }
}
