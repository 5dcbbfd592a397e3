//! The crash test: a child process submits a few thousand replayable commands to a
//! `LocalStorage`-backed queue and is killed with SIGKILL while they run; this process
//! then recovers the same store and checks the delivery guarantee:
//!
//! - every command whose submit returned is completed at least once (none lost);
//! - a command whose completion was committed before the crash does not run again;
//! - the only commands run twice are those still in the store at the crash (running, or
//!   finished but whose removal was not committed yet): at-least-once, not exactly-once;
//! - payloads at the limits (nested exactly `MAX_PAYLOAD_DEPTH` deep, exactly
//!   `MAX_PAYLOAD_BYTES` long) come back intact after the kill, and one past either limit
//!   is refused at submit, naming the limit, and never stored.
//!
//! `harness = false`: `main` is the test; run with the env var below it is the child.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, LaneError, LocalStorage, LocalStorageConfig,
    MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, QueueManagerBuilder, check_payload, handler_fn,
};
use serde_json::{Value, json};

const CHILD_DIR: &str = "A3S_LANE_CRASH_CHILD_DIR";
const TOTAL: u64 = 3_000;
const SUBMITTERS: u64 = 8;
/// The child announces itself ready to be killed after this many completions.
const KILL_AFTER: usize = 800;
/// Commands at the payload limits, numbered after the others; their handler never
/// returns in the child, so they are in the store at the kill.
const HELD: [u64; 3] = [TOTAL, TOTAL + 1, TOTAL + 2];

/// `[[ … "leaf" … ]]`, `depth` levels, built without recursion.
fn nested(depth: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// The payload of held command `n`: nested exactly `MAX_PAYLOAD_DEPTH` deep (the object
/// is one level), or exactly `MAX_PAYLOAD_BYTES` of JSON.
fn held_payload(n: u64) -> Value {
    if n == TOTAL + 2 {
        let empty = serde_json::to_vec(&json!({ "n": n, "blob": "" }))
            .unwrap()
            .len();
        json!({ "n": n, "blob": "x".repeat(MAX_PAYLOAD_BYTES - empty) })
    } else {
        json!({ "n": n, "deep": nested(MAX_PAYLOAD_DEPTH - 1) })
    }
}

fn main() {
    match std::env::var_os(CHILD_DIR) {
        Some(dir) => child(PathBuf::from(dir)),
        None => parent(),
    }
}

/// Appends one line per call with a single `write` on an O_APPEND file: the kernel keeps
/// it when the process is killed (SIGKILL does not lose written data; only a power cut
/// would, and that is not what this test simulates).
#[derive(Clone)]
struct Record(Arc<std::fs::File>);

impl Record {
    fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open record file");
        Self(Arc::new(file))
    }

    fn line(&self, n: u64) {
        (&*self.0)
            .write_all(format!("{n}\n").as_bytes())
            .expect("append record");
    }
}

fn read_record(path: &Path) -> Vec<u64> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| l.parse().expect("record line"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

fn child(dir: PathBuf) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let submitted = Record::open(&dir.join("submitted"));
        let done = Record::open(&dir.join("done-before-crash"));
        let completions = Arc::new(AtomicUsize::new(0));
        let store = Arc::new(LocalStorage::new(dir.join("store")).await.unwrap());
        let handler = {
            let done = done.clone();
            let completions = completions.clone();
            handler_fn(move |payload: Value, _ctx: CommandContext| {
                let done = done.clone();
                let completions = completions.clone();
                async move {
                    let n = payload["n"].as_u64().unwrap();
                    tokio::time::sleep(Duration::from_micros(200 + n % 7 * 150)).await;
                    done.line(n);
                    if completions.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                        println!("READY");
                        std::io::stdout().flush().unwrap();
                    }
                    Ok(Value::Null)
                }
            })
        };
        let manager = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("work", LaneConfig::new(1, 8), 0)
            .with_lane("held", LaneConfig::new(1, 8), 1)
            .with_storage(store)
            .with_handler("job", handler)
            .with_handler(
                "held",
                handler_fn(|_: Value, _: CommandContext| std::future::pending()),
            )
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();
        for n in HELD {
            let payload = held_payload(n);
            check_payload(&payload).expect("exactly at the limits");
            let handle = manager
                .submit_replayable("held", "held", payload)
                .await
                .unwrap();
            submitted.line(n);
            drop(handle);
        }
        let mut submitters = Vec::new();
        for s in 0..SUBMITTERS {
            let manager = manager.clone();
            let submitted = submitted.clone();
            submitters.push(tokio::spawn(async move {
                for n in (s..TOTAL).step_by(SUBMITTERS as usize) {
                    let handle = manager
                        .submit_replayable("work", "job", json!({ "n": n }))
                        .await
                        .unwrap();
                    // Only after submit returned: this command must never be lost.
                    submitted.line(n);
                    drop(handle);
                }
            }));
        }
        for submitter in submitters {
            submitter.await.unwrap();
        }
        // Wait to be killed.
        std::future::pending::<()>().await;
    });
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    match lines.next() {
        Some(Ok(line)) if line == "READY" => {}
        other => {
            let _ = child.kill();
            panic!(
                "the child did not get ready: {other:?} (status {:?})",
                child.wait()
            );
        }
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child was killed, not finished: {status:?}"
    );

    let acked: BTreeSet<u64> = read_record(&dir.path().join("submitted"))
        .into_iter()
        .collect();
    let before = read_record(&dir.path().join("done-before-crash"));
    let before_set: BTreeSet<u64> = before.iter().copied().collect();
    assert_eq!(
        before.len(),
        before_set.len(),
        "a command ran twice before the crash"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (unfinished, after) = runtime.block_on(async {
        // What the store held at the crash, read before anything runs again.
        let store = LocalStorage::open(
            dir.path().join("store"),
            LocalStorageConfig::new().must_exist(),
        )
        .await
        .expect("the crashed store opens");
        let unfinished: BTreeSet<u64> = store
            .load_commands()
            .await
            .unwrap()
            .iter()
            .map(|c| c.payload["n"].as_u64().unwrap())
            .collect();
        store.close().await.unwrap();

        // Recovery in this new process.
        let runs = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let intact = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let store = Arc::new(LocalStorage::new(dir.path().join("store")).await.unwrap());
        let manager = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("work", LaneConfig::new(1, 8), 0)
            .with_lane("held", LaneConfig::new(1, 8), 1)
            .with_storage(store.clone())
            .with_handler("held", {
                let (runs, intact) = (runs.clone(), intact.clone());
                handler_fn(move |payload: Value, _ctx: CommandContext| {
                    let n = payload["n"].as_u64().unwrap();
                    runs.lock().push(n);
                    intact.lock().push((n, payload == held_payload(n)));
                    async { Ok(Value::Null) }
                })
            })
            .with_handler("job", {
                let runs = runs.clone();
                handler_fn(move |payload: Value, _ctx: CommandContext| {
                    runs.lock().push(payload["n"].as_u64().unwrap());
                    async { Ok(Value::Null) }
                })
            })
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();
        // One level or one byte past the limits: refused at submit, naming the limit.
        let too_deep = json!({ "n": 0, "deep": nested(MAX_PAYLOAD_DEPTH) });
        let mut too_large = held_payload(TOTAL + 2);
        too_large["blob"] = Value::String(format!("{}x", too_large["blob"].as_str().unwrap()));
        for (payload, limit) in [
            (too_deep, "MAX_PAYLOAD_DEPTH"),
            (too_large, "MAX_PAYLOAD_BYTES"),
        ] {
            let error = manager
                .submit_replayable("held", "held", payload)
                .await
                .unwrap_err();
            assert!(matches!(error, LaneError::InvalidInput(_)), "{error:?}");
            assert!(error.to_string().contains(limit), "{error}");
        }
        manager.shutdown().await;
        manager.drain(Duration::from_secs(60)).await.unwrap();
        assert!(
            store.load_commands().await.unwrap().is_empty(),
            "recovery left commands in the store"
        );
        let after = runs.lock().clone();
        let mut intact = intact.lock().clone();
        intact.sort_unstable();
        assert_eq!(
            intact,
            HELD.iter().map(|&n| (n, true)).collect::<Vec<_>>(),
            "every payload at the limits comes back once, intact"
        );
        (unfinished, after)
    });

    let mut after_counts: HashMap<u64, usize> = HashMap::new();
    for n in &after {
        *after_counts.entry(*n).or_default() += 1;
    }
    // Recovery runs exactly what the store held, each once.
    let after_set: BTreeSet<u64> = after.iter().copied().collect();
    assert_eq!(after.len(), after_set.len(), "recovery ran a command twice");
    assert_eq!(
        after_set, unfinished,
        "recovery must run exactly the unfinished commands"
    );
    assert!(
        !unfinished.is_empty(),
        "the crash must interrupt work for this test to mean anything"
    );

    // None lost: every acknowledged submit completed, before or after the crash.
    let lost: Vec<u64> = acked
        .iter()
        .filter(|n| !before_set.contains(n) && !after_set.contains(n))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged commands never completed: {lost:?}"
    );

    // Completed-and-committed before the crash: never run again. The duplicates are only
    // commands the store still held (finished, removal not yet committed).
    let duplicates: Vec<u64> = before_set.intersection(&after_set).copied().collect();
    for n in &duplicates {
        assert!(unfinished.contains(n));
    }

    println!(
        "crash test: {} submits acknowledged (of {TOTAL}, and {} at the payload limits), {} \
         completed before SIGKILL, {} unfinished in the store at the crash, {} of them re-run \
         although their handler had finished (at-least-once window), 0 lost",
        acked.len() - HELD.len(),
        HELD.len(),
        before_set.len(),
        unfinished.len(),
        duplicates.len()
    );
}
