//! Compile-time checks that the public handles can cross threads.

use a3s_lane::{
    CommandContext, CommandHandle, CommandQueue, DeadLetterQueue, EventEmitter, EventStream,
    LaneConfig, LaneError, QueueManager, QueueManagerBuilder, QueueStats,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<QueueManager>();
    send_sync::<CommandQueue>();
    send_sync::<EventEmitter>();
    send_sync::<LaneConfig>();
    send_sync::<LaneError>();
    send_sync::<CommandContext>();
    send_sync::<DeadLetterQueue>();
    send_sync::<QueueStats>();
    send_sync::<QueueManagerBuilder>();
    send::<CommandHandle>();
    send::<EventStream>();
}
