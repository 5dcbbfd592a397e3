//! Each kind of damage to a `LocalStorage` store, and what opening it does: refused (with
//! every file in the directory unchanged byte for byte, and no new file), recovered, or
//! recovered with a dead letter; then what `LocalStorage::salvage` gets out of the
//! refused ones, without touching them either.
//!
//! The stores are real: a child process (this binary, run with the env var below)
//! submits replayable commands through a queue and is killed with SIGKILL, leaving the
//! files a crash leaves (`lane.db` with 2,000 commands, `lane.db-wal` with 200 more, one
//! commit each). `harness = false`: `main` is the test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use a3s_lane::{
    EventEmitter, LaneConfig, LaneError, LocalStorage, QueueManagerBuilder, handler_fn,
};
use serde_json::json;

const CHILD_DIR: &str = "A3S_LANE_DAMAGE_CHILD_DIR";
const IN_FILE: u64 = 2_000;
const IN_WAL: u64 = 200;
const ALL: usize = (IN_FILE + IN_WAL) as usize;
const PAGE: usize = 4096;
/// A WAL frame: its 24-byte header and one page.
const FRAME: usize = 24 + PAGE;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var_os(CHILD_DIR) {
        Some(dir) => runtime.block_on(child(PathBuf::from(dir))),
        None => runtime.block_on(parent()),
    }
}

async fn queue(store: Arc<LocalStorage>) -> a3s_lane::QueueManager {
    let manager = QueueManagerBuilder::new(EventEmitter::new(16))
        .with_lane("work", LaneConfig::new(1, 4), 0)
        .with_storage(store)
        .with_dlq(100)
        .with_handler("job", handler_fn(|p, _| async move { Ok(p) }))
        .build()
        .await
        .unwrap();
    // Nothing runs: every command stays in the store.
    manager.pause_lane("work").unwrap();
    manager.start().await.unwrap();
    manager
}

async fn submit(manager: &a3s_lane::QueueManager, numbers: std::ops::Range<u64>) {
    for n in numbers {
        // The handle is dropped: the command stays queued (the lane is paused).
        let _handle = manager
            .submit_replayable("work", "job", json!({ "n": n, "padding": "x".repeat(200) }))
            .await
            .unwrap();
    }
}

/// Writes 2,000 commands and closes cleanly (they end up in lane.db), then writes 200
/// more and waits to be killed (they are in the WAL).
async fn child(dir: PathBuf) {
    let store = Arc::new(LocalStorage::new(&dir).await.unwrap());
    let manager = queue(store).await;
    submit(&manager, 0..IN_FILE).await;
    manager.shutdown().await;
    drop(manager);
    // Opening waits for the dropped queue to release the store (its WAL folded in).
    let store = Arc::new(LocalStorage::new(&dir).await.unwrap());
    let manager = queue(store).await;
    submit(&manager, IN_FILE..IN_FILE + IN_WAL).await;
    println!("READY");
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
}

/// Every file in `dir`, by name, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for (name, bytes) in snapshot(from) {
        std::fs::write(to.join(name), bytes).unwrap();
    }
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    change(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

/// Bytes that look random but are the same at every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A SQLite database of another program, in WAL or rollback-journal mode.
fn foreign(dir: &Path, wal: bool) {
    let conn = rusqlite::Connection::open(dir.join("lane.db")).unwrap();
    if wal {
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    }
    conn.execute_batch(
        "CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada'), ('grace');",
    )
    .unwrap();
    if wal {
        // Its WAL as that program leaves it while running: copy the files now.
        let image = tempfile::tempdir().unwrap();
        copy_dir(dir, image.path());
        drop(conn);
        for entry in std::fs::read_dir(dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        copy_dir(image.path(), dir);
    }
}

/// A stored payload nested deeper than serde_json reads back (129 levels), as an older
/// version could write it.
fn unreadable_payload(dir: &Path) {
    let conn = rusqlite::Connection::open(dir.join("lane.db")).unwrap();
    let deep = format!("{}1{}", "[".repeat(129), "]".repeat(129));
    let changed = conn
        .execute("UPDATE commands SET payload = ?1 WHERE id = 6", [deep])
        .unwrap();
    assert_eq!(changed, 1);
}

enum Expect {
    /// Refused; the message names the damage with these words.
    Refused(&'static [&'static str]),
    /// Opens with this many commands and dead letters.
    Opens {
        commands: std::ops::RangeInclusive<usize>,
        dead_letters: usize,
    },
    /// Opens as a new, empty store.
    Created,
}

struct Case {
    name: &'static str,
    /// Which image to start from: the crash image (WAL) or the cleanly closed one.
    crashed: bool,
    damage: fn(&Path),
    expect: Expect,
}

fn wal(dir: &Path) -> PathBuf {
    dir.join("lane.db-wal")
}

fn db(dir: &Path) -> PathBuf {
    dir.join("lane.db")
}

fn cases() -> Vec<Case> {
    use Expect::*;
    vec![
        Case {
            name: "intact crash image (control)",
            crashed: true,
            damage: |_| {},
            expect: Opens {
                commands: ALL..=ALL,
                dead_letters: 0,
            },
        },
        Case {
            name: "intact crash image with a dead process's -shm",
            crashed: true,
            damage: |dir| std::fs::write(dir.join("lane.db-shm"), noise(32_768, 1)).unwrap(),
            expect: Opens {
                commands: ALL..=ALL,
                dead_letters: 0,
            },
        },
        Case {
            name: "WAL header overwritten",
            crashed: true,
            damage: |dir| edit(&wal(dir), |b| b[..32].copy_from_slice(&noise(32, 2))),
            expect: Refused(&["lane.db-wal", "not a WAL header"]),
        },
        Case {
            name: "WAL header overwritten, a dead process's -shm beside it",
            crashed: true,
            damage: |dir| {
                edit(&wal(dir), |b| b[..32].copy_from_slice(&noise(32, 3)));
                std::fs::write(dir.join("lane.db-shm"), noise(32_768, 4)).unwrap();
            },
            expect: Refused(&["lane.db-wal", "not a WAL header"]),
        },
        Case {
            name: "WAL frame checksum broken in the middle",
            crashed: true,
            damage: |dir| {
                edit(&wal(dir), |b| {
                    let frames = (b.len() - 32) / FRAME;
                    let at = 32 + frames / 2 * FRAME + 24 + 1000;
                    b[at..at + 16].copy_from_slice(&noise(16, 5));
                })
            },
            expect: Refused(&["lane.db-wal", "fails its checksum", "complete commit"]),
        },
        Case {
            name: "WAL with a torn tail (last commit half written)",
            crashed: true,
            damage: |dir| edit(&wal(dir), |b| b.truncate(b.len() - FRAME / 2)),
            expect: Opens {
                commands: ALL - 10..=ALL - 1,
                dead_letters: 0,
            },
        },
        Case {
            name: "lane.db truncated (not whole pages), its WAL beside it",
            crashed: true,
            damage: |dir| edit(&db(dir), |b| b.truncate(3 * PAGE + PAGE / 2)),
            expect: Refused(&["not a whole number of", "truncated"]),
        },
        Case {
            name: "lane.db truncated on a page boundary, its WAL beside it",
            crashed: true,
            damage: |dir| edit(&db(dir), |b| b.truncate(b.len() / 2 / PAGE * PAGE)),
            expect: Refused(&["truncated", "neither in the file"]),
        },
        Case {
            name: "lane.db truncated on a page boundary, no WAL",
            crashed: false,
            damage: |dir| edit(&db(dir), |b| b.truncate(b.len() / 2 / PAGE * PAGE)),
            expect: Refused(&["damaged"]),
        },
        Case {
            name: "zero-byte lane.db, no WAL",
            crashed: false,
            damage: |dir| std::fs::write(db(dir), b"").unwrap(),
            expect: Created,
        },
        Case {
            name: "zero-byte lane.db, its WAL beside it",
            crashed: true,
            damage: |dir| std::fs::write(db(dir), b"").unwrap(),
            expect: Refused(&["empty (0 bytes)", "lane.db-wal"]),
        },
        Case {
            name: "random bytes over lane.db's header",
            crashed: true,
            damage: |dir| edit(&db(dir), |b| b[..100].copy_from_slice(&noise(100, 6))),
            expect: Refused(&["not a SQLite database"]),
        },
        Case {
            name: "random bytes over a page deep in lane.db",
            crashed: false,
            damage: |dir| {
                edit(&db(dir), |b| {
                    let at = b.len() / PAGE / 2 * PAGE;
                    b[at..at + PAGE].copy_from_slice(&noise(PAGE, 7));
                })
            },
            expect: Refused(&["damaged"]),
        },
        Case {
            name: "another program's SQLite database in WAL mode",
            crashed: false,
            damage: |dir| {
                std::fs::remove_file(db(dir)).unwrap();
                foreign(dir, true);
            },
            expect: Refused(&["not an a3s-lane store", "left untouched"]),
        },
        Case {
            name: "another program's SQLite database in rollback mode",
            crashed: false,
            damage: |dir| {
                std::fs::remove_file(db(dir)).unwrap();
                foreign(dir, false);
            },
            expect: Refused(&["not an a3s-lane store", "left untouched"]),
        },
        Case {
            name: "a text file named lane.db",
            crashed: false,
            damage: |dir| std::fs::write(db(dir), "queue: ready\n".repeat(400)).unwrap(),
            expect: Refused(&["not a SQLite database"]),
        },
        Case {
            name: "WAL present, lane.db missing",
            crashed: true,
            damage: |dir| std::fs::remove_file(db(dir)).unwrap(),
            expect: Refused(&["without lane.db"]),
        },
        Case {
            name: "a payload that cannot be read back (129 levels deep)",
            crashed: false,
            damage: unreadable_payload,
            expect: Opens {
                commands: ALL - 1..=ALL - 1,
                dead_letters: 1,
            },
        },
    ]
}

async fn parent() {
    let base = tempfile::tempdir().unwrap();
    let crashed = base.path().join("crashed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_DIR, &crashed)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().map(Result::unwrap).as_deref(), Some("READY"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let files = snapshot(&crashed);
    assert!(
        files.keys().eq(["lane.db", "lane.db-wal"]),
        "{:?}",
        files.keys()
    );
    assert!(
        files["lane.db"].len() > 100 * PAGE,
        "2,000 commands in the file"
    );
    assert!(
        files["lane.db-wal"].len() > 100 * PAGE,
        "200 commits in the WAL"
    );

    // The same store closed cleanly: everything in lane.db, no WAL.
    let clean = base.path().join("clean");
    std::fs::create_dir(&clean).unwrap();
    copy_dir(&crashed, &clean);
    LocalStorage::new(&clean)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    assert!(snapshot(&clean).keys().eq(["lane.db"]));

    let mut failures = Vec::new();
    let mut refused = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(if case.crashed { &crashed } else { &clean }, dir.path());
        (case.damage)(dir.path());
        let before = snapshot(dir.path());
        let outcome = LocalStorage::new(dir.path()).await;
        let verdict = check(&case, dir.path(), &before, outcome).await;
        println!(
            "{:<60} {}",
            case.name,
            verdict.as_deref().unwrap_or_else(|e| e)
        );
        match verdict {
            Ok(_) if matches!(case.expect, Expect::Refused(_)) => refused.push((case, dir)),
            Ok(_) => {}
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    salvage(&refused).await;
    println!("damaged stores are refused untouched: ok");
}

async fn check(
    case: &Case,
    dir: &Path,
    before: &BTreeMap<String, Vec<u8>>,
    outcome: a3s_lane::Result<LocalStorage>,
) -> Result<String, String> {
    match (&case.expect, outcome) {
        (Expect::Refused(words), Err(LaneError::Storage(message))) => {
            let after = snapshot(dir);
            if after.keys().ne(before.keys()) {
                return Err(format!(
                    "files changed from {:?} to {:?}",
                    before.keys(),
                    after.keys()
                ));
            }
            for (name, bytes) in before {
                if after[name] != *bytes {
                    return Err(format!("{name} was changed ({message})"));
                }
            }
            for word in *words {
                if !message.contains(word) {
                    return Err(format!("the message lacks '{word}': {message}"));
                }
            }
            let says_what_to_do = message.contains("backup")
                || message.contains("directory of its own")
                || message.contains("salvage");
            if !says_what_to_do {
                return Err(format!("the message says nothing to do: {message}"));
            }
            Ok("refused, untouched".into())
        }
        (Expect::Refused(_), Ok(store)) => Err(format!(
            "opened with {} commands",
            store.load_commands().await.map_or(0, |c| c.len())
        )),
        (
            Expect::Opens {
                commands,
                dead_letters,
            },
            Ok(store),
        ) => {
            let found = store.load_commands().await.unwrap();
            let letters = store.load_dead_letters().await.unwrap();
            if !commands.contains(&found.len()) || letters.len() != *dead_letters {
                return Err(format!(
                    "opened with {} commands and {} dead letters",
                    found.len(),
                    letters.len()
                ));
            }
            if let Some(letter) = letters.first() {
                check_unreadable_letter(letter)?;
            }
            store.close().await.unwrap();
            if *dead_letters > 0 {
                // The move to the dead letters is stored, and a queue builds on it.
                let store = Arc::new(LocalStorage::new(dir).await.unwrap());
                let manager = queue(store).await;
                let dlq = manager.dead_letters().unwrap().list().await;
                if dlq.len() != *dead_letters || manager.stats().await.total_pending != found.len()
                {
                    return Err(format!(
                        "after a restart the queue has {} dead letters, {} pending",
                        dlq.len(),
                        manager.stats().await.total_pending
                    ));
                }
                check_unreadable_letter(&dlq[0])?;
            }
            Ok(format!(
                "opened: {} commands, {} dead letters",
                found.len(),
                letters.len()
            ))
        }
        (Expect::Created, Ok(store)) if store.was_created() => {
            let found = store.load_commands().await.unwrap().len();
            Ok(format!("created anew ({found} commands)"))
        }
        (_, other) => Err(format!("unexpected outcome: {other:?}")),
    }
}

fn check_unreadable_letter(letter: &a3s_lane::StoredDeadLetter) -> Result<(), String> {
    if letter.command_id == 6
        && letter.error.contains("cannot be read back")
        && letter.error.contains("recursion limit")
        && letter.payload.is_none()
    {
        Ok(())
    } else {
        Err(format!("unexpected dead letter {letter:?}"))
    }
}

/// Salvage copies what it can read out of each refused store, changing none of its files.
async fn salvage(refused: &[(Case, tempfile::TempDir)]) {
    let mut failures = Vec::new();
    for (case, dir) in refused {
        let before = snapshot(dir.path());
        let target = tempfile::tempdir().unwrap();
        let new_dir = target.path().join("salvaged");
        let outcome = LocalStorage::salvage(dir.path(), &new_dir).await;
        let after = snapshot(dir.path());
        if after != before {
            failures.push(format!("{}: salvage changed the damaged store", case.name));
        }
        let line = match outcome {
            Ok(report) => {
                let store = LocalStorage::new(&new_dir).await.unwrap();
                let commands = store.load_commands().await.unwrap().len();
                if commands != report.commands {
                    failures.push(format!(
                        "{}: reported {} commands, the new store has {commands}",
                        case.name, report.commands
                    ));
                }
                store.close().await.unwrap();
                if let Some(problem) = expected_salvage(case.name, &report) {
                    failures.push(format!("{}: {problem}: {report:#?}", case.name));
                }
                format!(
                    "{} commands, {} unreadable ranges, notes: {:?}",
                    report.commands,
                    report.unreadable.len(),
                    report.notes
                )
            }
            Err(error) => {
                if expected_salvage_failure(case.name) {
                    format!("nothing salvaged: {error}")
                } else {
                    failures.push(format!("{}: salvage failed: {error}", case.name));
                    String::new()
                }
            }
        };
        println!("salvage of {:<48} {line}", case.name);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Salvage cannot help when there is no SQLite data at all.
fn expected_salvage_failure(name: &str) -> bool {
    name.contains("text file")
        || name.contains("lane.db missing")
        || name.contains("zero-byte")
        || name.contains("another program")
}

/// What each salvage must at least recover; `Some(problem)` when it did not.
fn expected_salvage(name: &str, report: &lane_reliability::SalvageReport) -> Option<&'static str> {
    let n = report.commands;
    if name.starts_with("WAL header overwritten") {
        // The 200 commits in the WAL are lost with its header; the file's 2,000 are not.
        return (n != IN_FILE as usize || report.notes.is_empty())
            .then_some("expected the 2,000 commands of lane.db and a note on the WAL");
    }
    if name.contains("checksum broken in the middle") {
        return (!(IN_FILE as usize..ALL).contains(&n) || report.notes.is_empty())
            .then_some("expected the commits before the bad frame");
    }
    if name.contains("random bytes over lane.db's header") {
        return (n != ALL).then_some("expected every command once the header is repaired");
    }
    if name.contains("a page deep") {
        return (n == 0 || n >= ALL || report.unreadable.is_empty())
            .then_some("expected most commands and the lost ones reported");
    }
    if name.contains("truncated") {
        // Where the lost half held the table's upper pages nothing may be reachable;
        // the loss must be reported either way.
        return (n >= ALL || report.unreadable.is_empty() && report.notes.is_empty())
            .then_some("expected the lost commands reported");
    }
    (n == 0).then_some("expected something salvaged")
}
