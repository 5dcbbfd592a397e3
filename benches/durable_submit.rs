//! Durable submits and recovery with `LocalStorage`.
//!
//! - `durable_submit/*`: 64 concurrent submitters each submit 100 replayable commands
//!   (no-op handler) and wait for all 6,400 to complete. `no_storage` is the baseline of
//!   the same run; `local_storage_full` fsyncs every group commit (`synchronous=FULL`),
//!   `local_storage_normal` only at checkpoints. Throughput is in commands/s.
//! - `recovery_100k/*`: a store holding 100,000 unfinished commands. `open_and_load` is
//!   the baseline (open the store, read and parse every row); `open_build_start` is what
//!   a restarting process pays: open, build the manager, start (every command back in its
//!   lane). Nothing runs: the lane is paused.
//!
//! ```sh
//! cargo bench --bench durable_submit -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, LocalStorage, LocalStorageConfig, LocalSyncMode,
    QueueManager, QueueManagerBuilder, Storage, StorageOp, StoredCommand, handler_fn,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

const SUBMITTERS: usize = 64;
const PER_SUBMITTER: usize = 100;
const RECOVERED: u64 = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn noop() -> impl a3s_lane::Handler {
    handler_fn(|_payload: Value, _ctx: CommandContext| async { Ok(Value::Null) })
}

async fn manager(storage: Option<Arc<LocalStorage>>) -> QueueManager {
    let mut builder = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 64), 0)
        .with_handler("job", noop());
    if let Some(storage) = storage {
        builder = builder.with_storage(storage);
    }
    let manager = builder.build().await.unwrap();
    manager.start().await.unwrap();
    manager
}

/// 64 submitters x 100 commands, until every one completed.
async fn round(manager: &QueueManager) -> Duration {
    let started = Instant::now();
    let mut submitters = Vec::with_capacity(SUBMITTERS);
    for s in 0..SUBMITTERS {
        let manager = manager.clone();
        submitters.push(tokio::spawn(async move {
            let mut handles = Vec::with_capacity(PER_SUBMITTER);
            for n in 0..PER_SUBMITTER {
                handles.push(
                    manager
                        .submit_replayable("work", "job", json!({ "s": s, "n": n }))
                        .await
                        .unwrap(),
                );
            }
            for handle in handles {
                handle.await.unwrap();
            }
        }));
    }
    for submitter in submitters {
        submitter.await.unwrap();
    }
    started.elapsed()
}

fn durable_submit(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("durable_submit");
    group.throughput(Throughput::Elements((SUBMITTERS * PER_SUBMITTER) as u64));
    group.sample_size(20);
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let cases: Vec<(&str, Option<LocalSyncMode>)> = vec![
        ("no_storage", None),
        ("local_storage_full", Some(LocalSyncMode::Full)),
        ("local_storage_normal", Some(LocalSyncMode::Normal)),
    ];
    for (i, (name, sync)) in cases.into_iter().enumerate() {
        let manager = rt.block_on(async {
            let storage = match sync {
                Some(sync) => Some(Arc::new(
                    LocalStorage::open(
                        dirs[i - 1].path(),
                        LocalStorageConfig::new().with_sync(sync),
                    )
                    .await
                    .unwrap(),
                )),
                None => None,
            };
            manager(storage).await
        });
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let manager = manager.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += round(&manager).await;
                    }
                    total
                }
            })
        });
        rt.block_on(async {
            manager.shutdown().await;
            manager.drain(Duration::from_secs(60)).await.unwrap();
        });
    }
    group.finish();
}

async fn fill(dir: &Path) {
    let store = LocalStorage::new(dir).await.unwrap();
    for chunk in (1..=RECOVERED).collect::<Vec<_>>().chunks(10_000) {
        let ops = chunk
            .iter()
            .map(|&id| {
                StorageOp::SaveCommand(StoredCommand {
                    id,
                    lane_id: "work".into(),
                    command_type: "job".into(),
                    payload: json!({ "user": id % 977, "url": format!("https://example.com/item/{id}") }),
                    attempts: (id % 3) as u32,
                    created_at: 1_700_000_000_000 + id,
                    not_before: None,
                    start_by: None,
                    key: None,
                    group: None,
                    replayable: true,
                })
            })
            .collect();
        store.apply(ops).await.unwrap();
    }
    store.close().await.unwrap();
}

/// Opens and closes the store: waits until the previous user has released it.
async fn settle_store(dir: &Path) {
    LocalStorage::new(dir).await.unwrap().close().await.unwrap();
}

fn recovery(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(fill(dir.path()));
    let mut group = c.benchmark_group("recovery_100k");
    group.throughput(Throughput::Elements(RECOVERED));
    group.sample_size(10);
    group.bench_function("open_and_load", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let dir = dir.path().to_path_buf();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let store = LocalStorage::new(&dir).await.unwrap();
                    let commands = store.load_commands().await.unwrap();
                    total += started.elapsed();
                    assert_eq!(commands.len() as u64, RECOVERED);
                    black_box(commands);
                    store.close().await.unwrap();
                }
                total
            }
        })
    });
    group.bench_function("open_build_start", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let dir = dir.path().to_path_buf();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let store = Arc::new(LocalStorage::new(&dir).await.unwrap());
                    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
                        .with_lane("work", LaneConfig::new(1, 8), 0)
                        .with_storage(store)
                        .with_handler("job", noop())
                        .build()
                        .await
                        .unwrap();
                    manager.pause_lane("work").unwrap();
                    manager.start().await.unwrap();
                    total += started.elapsed();
                    assert_eq!(manager.stats().await.total_pending as u64, RECOVERED);
                    // Untimed: a hard stop keeps every command in the store for the next
                    // iteration.
                    manager.shutdown_now().await;
                    manager.drain(Duration::from_secs(60)).await.unwrap();
                    drop(manager);
                    settle_store(&dir).await;
                }
                total
            }
        })
    });
    group.finish();
}

criterion_group!(benches, durable_submit, recovery);
criterion_main!(benches);
