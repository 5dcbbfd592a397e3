//! Idle cost: 10,000 started managers with the default lanes and no work.
//! Reports heap bytes per manager (counted by a global allocator), tokio tasks alive and
//! process CPU time over one idle second, next to a baseline measured in the same run:
//! the smallest hand-rolled queue (an unbounded mpsc channel and a task parked on it).
//! Run: `cargo bench --bench idle_managers`.

#![allow(unsafe_code)] // the counting global allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use a3s_lane::{EventEmitter, QueueManagerBuilder};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MANAGERS: usize = 10_000;

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_time;

fn idle_cpu(rt: &tokio::runtime::Runtime) -> Duration {
    let before = cpu_time();
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(1)).await });
    cpu_time() - before
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary with no
    // such flag, and the whole bench in a debug build would take minutes.
    if !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let tasks_before = rt.metrics().num_alive_tasks();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let managers: Vec<_> = rt.block_on(async {
        let mut managers = Vec::with_capacity(MANAGERS);
        for _ in 0..MANAGERS {
            let manager = QueueManagerBuilder::new(EventEmitter::new(100))
                .with_default_lanes()
                .build()
                .await
                .unwrap();
            manager.start().await.unwrap();
            managers.push(manager);
        }
        managers
    });
    let vec_bytes = (MANAGERS * std::mem::size_of_val(&managers[0])) as isize;
    let ours = (LIVE_BYTES.load(Ordering::Relaxed) - before - vec_bytes) as f64 / MANAGERS as f64;
    let our_tasks = rt.metrics().num_alive_tasks() - tasks_before;
    let our_cpu = idle_cpu(&rt);

    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let tasks_before = rt.metrics().num_alive_tasks();
    let baseline: Vec<_> = rt.block_on(async {
        (0..MANAGERS)
            .map(|_| {
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<Box<dyn FnOnce() + Send>>();
                tokio::spawn(async move {
                    while let Some(job) = rx.recv().await {
                        job();
                    }
                });
                tx
            })
            .collect()
    });
    let vec_bytes = (MANAGERS * std::mem::size_of_val(&baseline[0])) as isize;
    let theirs = (LIVE_BYTES.load(Ordering::Relaxed) - before - vec_bytes) as f64 / MANAGERS as f64;
    let their_tasks = rt.metrics().num_alive_tasks() - tasks_before;
    let their_cpu = idle_cpu(&rt);

    println!("idle_managers/{MANAGERS} started managers, default lanes");
    println!(
        "  a3s-lane:  {ours:>8.0} bytes each, {our_tasks} tasks alive, {our_cpu:?} CPU over 1 s idle"
    );
    println!(
        "  baseline:  {theirs:>8.0} bytes each, {their_tasks} tasks alive, {their_cpu:?} CPU over 1 s idle (mpsc + parked task)"
    );
    drop(managers);
    drop(baseline);
}
