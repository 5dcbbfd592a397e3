//! The Redis server's clock as seen from this process, so that event subscriptions start
//! at "now" on the server's clock.

use lane_core::Result;

use crate::connection::Conn;
use crate::wire::redis_error;

/// The Redis server's clock minus this process's, in milliseconds, and the round trip it
/// was measured over (one TIME call; the server read its clock somewhere in it).
pub(super) async fn clock_offset_ms(conn: &mut Conn, prefix: &str) -> Result<(i64, i64)> {
    let local_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    };
    let before = local_ms();
    let (secs, micros): (i64, i64) = conn
        .query_at(prefix, redis::cmd("TIME"))
        .await
        .map_err(|e| redis_error(&e))?;
    let after = local_ms();
    let server = secs.saturating_mul(1000).saturating_add(micros / 1000);
    let middle = before + (after - before) / 2;
    Ok((server - middle, after - before + 1))
}
