//! What travels through Redis besides payloads: errors as JSON, and readers for the
//! scripts' nested replies.

use lane_core::{CommandFailure, LaneError};
use redis::Value;
use serde::{Deserialize, Serialize};

/// A [`LaneError`] as stored in Redis and sent back to the submitter: the core's kept
/// form ([`CommandFailure`], one rule for every engine), plus what a
/// `handler_not_found` error needs to come back whole.
#[derive(Debug, Serialize, Deserialize)]
struct RemoteError {
    #[serde(flatten)]
    failure: CommandFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registered: Option<String>,
}

pub(crate) fn encode_error(error: &LaneError) -> String {
    let (command_type, registered) = match error {
        LaneError::HandlerNotFound {
            command_type,
            registered,
        } => (Some(command_type.clone()), Some(registered.clone())),
        _ => (None, None),
    };
    let remote = RemoteError {
        failure: CommandFailure::from_error(error),
        command_type,
        registered,
    };
    serde_json::to_string(&remote).unwrap_or_else(|_| {
        // Strings and a number always serialize; keep a readable error if not.
        r#"{"kind":"other","message":"unserializable error"}"#.to_owned()
    })
}

/// The error kept in Redis as `data` (see [`encode_error`]), as the core keeps it. A
/// value no version wrote comes back as kind `other` holding it.
pub(crate) fn decode_failure(data: &str) -> CommandFailure {
    match serde_json::from_str::<RemoteError>(data) {
        Ok(remote) => remote.failure,
        Err(_) => CommandFailure {
            kind: "other".into(),
            message: format!("unreadable error from a worker: {data}"),
            timeout_ms: None,
        },
    }
}

pub(crate) fn decode_error(data: &str) -> LaneError {
    let Ok(remote) = serde_json::from_str::<RemoteError>(data) else {
        return LaneError::Other(format!("unreadable error from a worker: {data}"));
    };
    match remote.failure.kind.as_str() {
        "handler_not_found" => LaneError::HandlerNotFound {
            command_type: remote.command_type.unwrap_or_default(),
            registered: remote.registered.unwrap_or_default(),
        },
        _ => remote.failure.to_error(),
    }
}

/// Whether a call that failed this way may succeed when sent again (Redis unreachable,
/// restarting, loading, failing over, or a connection that broke): the call may or may
/// not have reached Redis.
pub(crate) fn is_transient(error: &redis::RedisError) -> bool {
    error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_io_error()
        || !matches!(error.retry_method(), redis::RetryMethod::NoRetry)
}

/// Whether a call that failed this way may have been received (and acted on) by Redis:
/// not when Redis answered with an error (a script that fails, `LOADING`), nor when the
/// connection was refused or the request could not be written (a broken pipe).
pub(crate) fn may_have_reached(error: &redis::RedisError) -> bool {
    use std::io::ErrorKind as Io;
    if matches!(error.kind(), redis::ErrorKind::Server(_)) || error.is_connection_refusal() {
        return false;
    }
    let unsent_io = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                Io::BrokenPipe | Io::NotConnected | Io::ConnectionRefused | Io::AddrNotAvailable
            )
        });
    // The multiplexed connection reports a request it could not hand to its (closed)
    // connection as a bare "broken pipe".
    !(unsent_io || error.to_string().eq_ignore_ascii_case("broken pipe"))
}

/// Maps a Redis failure to the queue's error type (retryable, like any storage error).
pub(crate) fn redis_error(error: &redis::RedisError) -> LaneError {
    use redis::{ErrorKind, ServerErrorKind};
    // Only a connection to a single server sees redirections: a cluster connection
    // follows them.
    if matches!(
        error.kind(),
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
    ) {
        return LaneError::Storage(format!(
            "redis: {error}; the server is a node of a Redis Cluster and another node holds \
             this queue's slot: connect with RedisQueueConfig::cluster([node URLs]) instead \
             of RedisQueueConfig::new"
        ));
    }
    LaneError::Storage(format!("redis: {error}"))
}

/// An unfinished command as the scripts keep it:
/// `lane \n attempts|failures|client|cref|submitted \n type \n payload`, where attempts
/// counts the runs that ended before the current one and submitted is the submit time
/// (ms since the Unix epoch, Redis clock; absent in entries of versions before it).
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) lane: &'a str,
    pub(crate) attempts: u32,
    pub(crate) failures: u32,
    /// The submitter's client id, empty when no submitter waits for the result.
    pub(crate) client: &'a str,
    /// The submitter's reference for the command.
    pub(crate) cref: &'a str,
    /// When the command was submitted (or redriven), ms since the Unix epoch.
    pub(crate) submitted_at_ms: Option<u64>,
    pub(crate) command_type: &'a str,
    pub(crate) payload: &'a str,
}

impl<'a> Entry<'a> {
    pub(crate) fn parse(entry: &'a str) -> Result<Self, LaneError> {
        let mut lines = entry.splitn(4, '\n');
        let (Some(lane), Some(header), Some(command_type), Some(payload)) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(protocol("command entry"));
        };
        let mut fields = header.splitn(5, '|');
        let (Some(Ok(attempts)), Some(Ok(failures)), Some(client), Some(cref)) = (
            fields.next().map(str::parse::<u32>),
            fields.next().map(str::parse::<u32>),
            fields.next(),
            fields.next(),
        ) else {
            return Err(protocol("command entry counts"));
        };
        Ok(Self {
            lane,
            attempts,
            failures,
            client,
            cref,
            submitted_at_ms: fields.next().and_then(|ms| ms.parse().ok()),
            command_type,
            payload,
        })
    }
}

/// A run as the scripts keep it: `fencing token|claimed at (us)`.
pub(crate) fn parse_run(run: &str) -> (Option<u64>, Option<u64>) {
    let mut parts = run.splitn(2, '|');
    let token = parts.next().and_then(|t| t.parse().ok());
    let started = parts
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| s as u64);
    (token, started)
}

pub(crate) fn protocol(what: &str) -> LaneError {
    LaneError::Storage(format!(
        "redis: unexpected reply from the queue's script ({what}); are all processes on the same a3s-lane version?"
    ))
}

pub(crate) fn array(value: Value) -> Result<Vec<Value>, LaneError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err(protocol("expected an array")),
    }
}

pub(crate) fn string(value: &Value) -> Result<String, LaneError> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes.clone()).map_err(|_| protocol("not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        Value::Okay => Ok("OK".into()),
        _ => Err(protocol("expected a string")),
    }
}

/// A string, or `None` for a missing value (nil, or an empty string from a script).
pub(crate) fn opt_string(value: &Value) -> Result<Option<String>, LaneError> {
    match value {
        Value::Nil => Ok(None),
        other => string(other).map(|s| (!s.is_empty()).then_some(s)),
    }
}

pub(crate) fn int(value: &Value) -> Result<i64, LaneError> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| protocol("expected a number")),
        Value::SimpleString(s) => s.parse().map_err(|_| protocol("expected a number")),
        _ => Err(protocol("expected a number")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn errors_survive_the_trip_through_redis() {
        for error in [
            LaneError::CommandError("boom".into()),
            LaneError::NonRetryable("bad input".into()),
            LaneError::Timeout(Duration::from_millis(1500)),
            LaneError::Cancelled("cancelled by request".into()),
            LaneError::InvalidInput("payload nested too deep".into()),
            LaneError::Expired("not started by its start-by deadline".into()),
            LaneError::HandlerNotFound {
                command_type: "resize".into(),
                registered: "fetch, store".into(),
            },
        ] {
            assert_eq!(decode_error(&encode_error(&error)), error);
            assert_eq!(
                decode_failure(&encode_error(&error)),
                CommandFailure::from_error(&error)
            );
        }
        assert_eq!(decode_failure("not json").kind, "other");
    }

    #[test]
    fn entries_of_this_and_older_versions_parse() {
        let entry = Entry::parse("jobs\n1|0|c1|7|1733400000123\nresize\n{\"a\":\"|\"}").unwrap();
        assert_eq!(
            (entry.lane, entry.attempts, entry.client, entry.cref),
            ("jobs", 1, "c1", "7")
        );
        assert_eq!(entry.submitted_at_ms, Some(1_733_400_000_123));
        assert_eq!(entry.payload, "{\"a\":\"|\"}");
        let older = Entry::parse("jobs\n0|0|c1|7\nresize\nnull").unwrap();
        assert_eq!((older.cref, older.submitted_at_ms), ("7", None));
    }
}
