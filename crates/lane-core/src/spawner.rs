//! [`Spawner`]: where the queue runs its commands.
//!
//! By default every command runs in a tokio task on the runtime `start()` was called on.
//! A language binding whose handlers live on a host event loop (an asyncio loop, a
//! JavaScript event loop) can run the queue's runners there instead, so that a command
//! whose handler runs on that loop never switches threads between being dispatched,
//! run and finished.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

/// One of the queue's command runners: it runs a dispatched command, books its outcome,
/// and goes on with the next dispatched command until there is none.
pub type CommandRunner = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs the queue's command runners (see the [module docs](self)).
///
/// A runner uses tokio timers and synchronisation: poll it inside the context of the
/// runtime `start()` was called on (`tokio::runtime::Handle::enter`). It may be polled
/// from any thread, one at a time, and must be polled to completion whenever it is woken,
/// or its commands never finish.
///
/// ```
/// use a3s_lane::{CommandRunner, EventEmitter, QueueManagerBuilder, Spawner};
///
/// /// Runs the runners as tokio tasks, counting them.
/// #[derive(Debug, Default)]
/// struct Counting(std::sync::atomic::AtomicUsize);
///
/// impl Spawner for Counting {
///     fn spawn(&self, runner: CommandRunner) {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         tokio::spawn(runner);
///     }
/// }
///
/// let builder = QueueManagerBuilder::new(EventEmitter::new(16)).with_spawner(Counting::default());
/// # let _ = builder;
/// ```
pub trait Spawner: Send + Sync + Debug + 'static {
    /// Takes a runner to poll to completion.
    fn spawn(&self, runner: CommandRunner);
}

fn _spawner_is_dyn_compatible(_: Box<dyn Spawner>) {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{CommandRunner, Spawner};
    use crate::{EventEmitter, LaneConfig, QueueManagerBuilder};

    #[derive(Debug, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl Spawner for Counting {
        fn spawn(&self, runner: CommandRunner) {
            self.0.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(runner);
        }
    }

    #[tokio::test]
    async fn every_runner_goes_through_the_spawner() {
        let spawned = Arc::new(AtomicUsize::new(0));
        let manager = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("a", LaneConfig::new(1, 2), 0)
            .with_spawner(Counting(spawned.clone()))
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();
        let mut handles = Vec::new();
        for i in 0..10 {
            let handle = manager
                .submit_fn("a", "n", move |_| async move { Ok(serde_json::json!(i)) })
                .await
                .unwrap();
            handles.push(handle);
        }
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.await.unwrap(), serde_json::json!(i));
        }
        // At most one runner per slot at a time; finished runners go on with what waits.
        let spawned = spawned.load(Ordering::Relaxed);
        assert!((1..=10).contains(&spawned), "{spawned} runners");
    }
}
