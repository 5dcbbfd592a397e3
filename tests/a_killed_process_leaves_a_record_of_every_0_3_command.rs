//! The crash test of the 0.3 storage promise: with `with_storage(..)`, every accepted
//! command is recorded, including one submitted as a `Box<dyn Command>` (the 0.3
//! `submit(lane, Box<dyn Command>)` path), and nothing acknowledged disappears without a
//! record after a crash.
//!
//! A child process builds a `LocalStorage`-backed queue as the 0.3 README does and
//! submits, with the 0.3 `submit`, to lane `work` (one at a time):
//!
//! - `opaque` #1, a `Box<dyn Command>` that cannot be replayed (no `replay_payload`): it
//!   runs and never returns;
//! - `send_email`, a 0.3-style command that can be replayed (`replay_payload` gives its
//!   JSON payload): it waits behind #1;
//! - `opaque` #2, another that cannot be replayed: it waits too;
//!
//! and to lane `quick` an `opaque` command that finishes. While they wait or run,
//! `storage.load_commands()` lists each unfinished one with its type and lane (checked in
//! the child: the store is its until it dies); the finished one is gone from it. The
//! child is then killed with SIGKILL.
//!
//! This process then reads the store (the three records, with their types, lanes and
//! whether they can be replayed) and starts a fresh queue on it with a handler for
//! `send_email`: the replayable command runs once with its payload, and each `opaque`
//! one becomes a dead letter (in the queue and in the store) whose error says it was not
//! replayable; the finished one comes back as neither. The store holds no command after.
//!
//! `harness = false`: `main` is the test; run with the env var below it is the child.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use a3s_lane::{
    Command, CommandContext, EventEmitter, LaneConfig, LocalStorage, LocalStorageConfig,
    QueueManagerBuilder, Result, StoredCommand, handler_fn,
};
use async_trait::async_trait;
use serde_json::{Value, json};

const CHILD_DIR: &str = "A3S_LANE_BOXED_CRASH_CHILD_DIR";
const NOT_REPLAYABLE: &str = "not replayable";

/// A 0.3 command that cannot be replayed: it gives no `replay_payload`.
struct Opaque {
    name: &'static str,
    /// Whether `execute` returns (else it runs until the process dies).
    finishes: bool,
}

#[async_trait]
impl Command for Opaque {
    async fn execute(&self) -> Result<Value> {
        if !self.finishes {
            std::future::pending::<()>().await;
        }
        Ok(json!({ "done": self.name }))
    }

    fn command_type(&self) -> &str {
        "opaque"
    }
}

/// A 0.3 command that can be replayed: recovered, the handler registered for its type
/// runs it with this payload.
struct SendEmail {
    to: String,
}

#[async_trait]
impl Command for SendEmail {
    async fn execute(&self) -> Result<Value> {
        Ok(json!({ "sent": &self.to }))
    }

    fn command_type(&self) -> &str {
        "send_email"
    }

    fn replay_payload(&self) -> Option<Value> {
        Some(json!({ "to": &self.to }))
    }
}

fn main() {
    match std::env::var_os(CHILD_DIR) {
        Some(dir) => child(PathBuf::from(dir)),
        None => parent(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `(command_type, lane_id, replayable, payload)` of each stored command, in id order.
fn summary(stored: &[StoredCommand]) -> Vec<(String, String, bool, Value)> {
    stored
        .iter()
        .map(|c| {
            (
                c.command_type.clone(),
                c.lane_id.clone(),
                c.replayable,
                c.payload.clone(),
            )
        })
        .collect()
}

/// What the store holds at the kill: the three unfinished commands.
fn expected_at_kill() -> Vec<(String, String, bool, Value)> {
    vec![
        ("opaque".into(), "work".into(), false, Value::Null),
        (
            "send_email".into(),
            "work".into(),
            true,
            json!({ "to": "ada@example.com" }),
        ),
        ("opaque".into(), "work".into(), false, Value::Null),
    ]
}

fn child(dir: PathBuf) {
    runtime().block_on(async move {
        // As the 0.3 README builds a durable queue.
        let storage = Arc::new(LocalStorage::new(dir.join("store")).await.unwrap());
        let manager = QueueManagerBuilder::new(EventEmitter::new(100))
            .with_storage(storage.clone())
            .with_lane("work", LaneConfig::new(1, 1), 0)
            .with_lane("quick", LaneConfig::new(1, 4), 1)
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();

        let mut ids = Vec::new();
        let quick = manager
            .submit(
                "quick",
                Box::new(Opaque {
                    name: "quick",
                    finishes: true,
                }),
            )
            .await
            .unwrap();
        assert_eq!(quick.await.unwrap().unwrap(), json!({ "done": "quick" }));
        let mut receivers = Vec::new();
        let commands: [Box<dyn Command>; 3] = [
            Box::new(Opaque {
                name: "running",
                finishes: false,
            }),
            Box::new(SendEmail {
                to: "ada@example.com".into(),
            }),
            Box::new(Opaque {
                name: "waiting",
                finishes: false,
            }),
        ];
        for command in commands {
            // Acknowledged: from here on it must never disappear without a record.
            receivers.push(manager.submit("work", command).await.unwrap());
            let stored = storage.load_commands().await.unwrap();
            ids.push(stored.last().unwrap().id);
        }
        // Each is listed with its type and lane while it waits or runs; the finished
        // one is not (its removal is written behind its result: waited for).
        let mut stored = storage.load_commands().await.unwrap();
        for _ in 0..500 {
            if stored.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            stored = storage.load_commands().await.unwrap();
        }
        assert_eq!(summary(&stored), expected_at_kill(), "{stored:#?}");
        let running = manager.queue().command_status(ids[0]).unwrap();
        assert_eq!(running.state, a3s_lane::CommandState::Running);
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        println!("READY {}", ids.join(" "));
        std::io::stdout().flush().unwrap();
        // Wait to be killed.
        std::future::pending::<()>().await;
    });
}

fn run_and_kill(dir: &Path) -> Vec<u64> {
    let mut child = Process::new(std::env::current_exe().unwrap())
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ids = match lines.next() {
        Some(Ok(line)) if line.starts_with("READY") => line
            .split(' ')
            .skip(1)
            .map(|id| id.parse().unwrap())
            .collect(),
        other => {
            let _ = child.kill();
            panic!(
                "the child did not get ready: {other:?} (status {:?})",
                child.wait()
            );
        }
    };
    child.kill().expect("SIGKILL the child");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child was killed, not finished: {status:?}"
    );
    ids
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let ids = run_and_kill(dir.path());
    assert_eq!(ids.len(), 3, "{ids:?}");
    let store_dir = dir.path().join("store");
    runtime().block_on(async {
        // What the store held at the kill, read before anything runs again.
        let store = LocalStorage::open(&store_dir, LocalStorageConfig::new().must_exist())
            .await
            .expect("the killed process's store opens");
        let stored = store.load_commands().await.unwrap();
        assert_eq!(summary(&stored), expected_at_kill(), "{stored:#?}");
        assert_eq!(stored.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
        store.close().await.unwrap();

        // A fresh queue on the same directory, with the handler for the replayable type.
        let runs = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let storage = Arc::new(LocalStorage::new(&store_dir).await.unwrap());
        let manager = QueueManagerBuilder::new(EventEmitter::new(100))
            .with_storage(storage.clone())
            .with_dlq(100)
            .with_lane("work", LaneConfig::new(1, 1), 0)
            .with_lane("quick", LaneConfig::new(1, 4), 1)
            .with_handler("send_email", {
                let runs = runs.clone();
                handler_fn(move |payload: Value, ctx: CommandContext| {
                    runs.lock().push((ctx.id(), payload.clone()));
                    async move { Ok(json!({ "sent": payload["to"] })) }
                })
            })
            .build()
            .await
            .unwrap();
        manager.start().await.unwrap();
        manager.shutdown().await;
        manager.drain(Duration::from_secs(30)).await.unwrap();

        // The replayable command ran once, with its payload, under its id.
        assert_eq!(
            *runs.lock(),
            vec![(ids[1], json!({ "to": "ada@example.com" }))],
            "the replayable 0.3 command is recovered and run by its type's handler"
        );
        // The others are dead letters saying why, in the queue and in the store.
        let check = |letters: Vec<a3s_lane::DeadLetter>, whose: &str| {
            let mut summary: Vec<(u64, String, String, Option<Value>)> = letters
                .iter()
                .map(|l| {
                    assert!(
                        l.error.starts_with(NOT_REPLAYABLE) && l.error.contains("Box<dyn Command>"),
                        "{whose}: the reason says it was not replayable: {l:?}"
                    );
                    (
                        l.command_id,
                        l.command_type.clone(),
                        l.lane_id.clone(),
                        l.payload.clone(),
                    )
                })
                .collect();
            summary.sort_unstable_by_key(|l| l.0);
            assert_eq!(
                summary,
                vec![
                    (ids[0], "opaque".into(), "work".into(), None),
                    (ids[2], "opaque".into(), "work".into(), None),
                ],
                "{whose}: every acknowledged opaque command is a dead letter, nothing else"
            );
        };
        check(manager.dead_letters().unwrap().list().await, "the queue");
        check(storage.load_dead_letters().await.unwrap(), "the store");
        assert!(
            storage.load_commands().await.unwrap().is_empty(),
            "recovery left commands in the store"
        );
        println!(
            "0.3 crash test: 3 Box<dyn Command> submits acknowledged (1 replayable, 2 not) and \
             listed by load_commands() with type and lane while waiting or running; after \
             SIGKILL the replayable one ran again with its payload and the 2 others are dead \
             letters with the reason \"{}\"",
            manager.dead_letters().unwrap().list().await[0].error
        );
    });
}
