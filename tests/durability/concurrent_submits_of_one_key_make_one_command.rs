//! Many submits of one idempotency key at once, from several threads: exactly one
//! command is made (and, durable, stored), every submit gets its id, and it runs once.
//! The durable path checks the key before its write and again when it queues, so a
//! submit that lost the race removes its record again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, LocalStorage, QueueManager, QueueManagerBuilder,
    SubmitOptions, handler_fn,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const SUBMITTERS: usize = 4;
const EACH: usize = 50;

async fn manager(
    store: Option<Arc<LocalStorage>>,
    runs: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
) -> QueueManager {
    let mut builder = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("jobs", LaneConfig::new(1, 4), 0)
        .with_handler(
            "job",
            handler_fn(move |payload: Value, _ctx: CommandContext| {
                let (runs, gate) = (runs.clone(), gate.clone());
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.expect("open").forget();
                    Ok(payload)
                }
            }),
        );
    if let Some(store) = store {
        builder = builder.with_storage(store);
    }
    let manager = builder.build().await.unwrap();
    manager.start().await.unwrap();
    manager
}

async fn one_command_for_one_key(store: Option<Arc<LocalStorage>>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let manager = manager(store.clone(), runs.clone(), gate.clone()).await;
    let mut submitters = Vec::new();
    for s in 0..SUBMITTERS {
        let manager = manager.clone();
        submitters.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..EACH {
                let options = SubmitOptions::new().with_key("the-one");
                handles.push(
                    manager
                        .submit_replayable_with("jobs", "job", json!({ "by": s, "i": i }), &options)
                        .await
                        .unwrap(),
                );
            }
            handles
        }));
    }
    let mut handles = Vec::new();
    for submitter in submitters {
        handles.extend(submitter.await.unwrap());
    }
    let first = handles.iter().filter(|h| !h.is_duplicate()).count();
    assert_eq!(first, 1, "{first} submits made a command");
    let id = handles[0].id();
    assert!(
        handles.iter().all(|h| h.id() == id),
        "submits of one key got different ids"
    );
    if let Some(store) = &store {
        let stored = store.load_commands().await.unwrap();
        assert_eq!(
            stored.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![id],
            "the store holds one command for the key"
        );
        assert_eq!(stored[0].key.as_deref(), Some("the-one"));
    }
    gate.add_permits(1);
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "every submit gets the one result"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    manager
        .drain(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    if let Some(store) = &store {
        assert!(store.load_commands().await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory() {
    one_command_for_one_key(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStorage::new(dir.path()).await.unwrap());
    one_command_for_one_key(Some(store)).await;
}
