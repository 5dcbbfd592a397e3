//! Compile-time checks that the Redis engine's handles can cross threads.

use a3s_lane::{
    RedisCommandHandle, RedisQueue, RedisQueueConfig, RedisQueueStats, RedisWorker,
    RedisWorkerConfig, RemoteCommand,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn redis_types_are_send_and_sync() {
    send_sync::<RedisQueue>();
    send_sync::<RedisQueueConfig>();
    send_sync::<RedisWorkerConfig>();
    send_sync::<RedisWorker>();
    send_sync::<RedisQueueStats>();
    send_sync::<RemoteCommand>();
    send::<RedisCommandHandle>();
}
