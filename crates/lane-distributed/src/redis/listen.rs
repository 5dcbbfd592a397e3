//! The connection of a blocking listener (BLPOP loops of the producer and the worker).

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;

/// Opens a dedicated connection whose response timeout outlasts a `block`-long BLPOP,
/// retrying with backoff (50 ms doubling to 5 s) until it succeeds, or `None` once `stop`
/// fires. `on_retry` runs after each failed attempt; `what` names the listener in logs.
pub(super) async fn connect_listener(
    client: &redis::Client,
    block: Duration,
    stop: &mut oneshot::Receiver<()>,
    what: &str,
    mut on_retry: impl FnMut(),
) -> Option<MultiplexedConnection> {
    let config =
        AsyncConnectionConfig::new().set_response_timeout(Some(block + Duration::from_secs(5)));
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = tokio::select! {
            _ = &mut *stop => return None,
            connected = client.get_multiplexed_async_connection_with_config(&config) => connected,
        };
        match connected {
            Ok(connection) => return Some(connection),
            Err(error) => {
                tracing::warn!(%error, "{what} cannot connect to Redis; retrying");
                tokio::select! {
                    _ = &mut *stop => return None,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                on_retry();
            }
        }
    }
}
