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
//!   is refused at submit, naming the limit, and never stored;
//! - delayed commands (0.2 to 2.6 s) and commands with a far start-by deadline come back
//!   with their start time and deadline as submitted: one still waiting at the restart is
//!   `Delayed`, and no delayed command runs before its start time, in either process;
//!   none expires;
//! - the lanes keep their finished commands (`Retention`): every acknowledged command
//!   not in the store at the crash has its record (completed, with its times) in the
//!   store after it, since its removal and its record are one commit; after recovery
//!   every acknowledged command has one.
//!
//! `harness = false`: `main` is the test; run with the env var below it is the child.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use a3s_lane::{
    CommandContext, CommandState, EventEmitter, LaneConfig, LaneError, LocalStorage,
    LocalStorageConfig, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, QueueManagerBuilder, Retention,
    StoredCommand, StoredFinished, SubmitOptions, check_payload, handler_fn,
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
/// Timed commands, numbered after the held ones and submitted before the others (so
/// all are acknowledged at the kill): `TIMED_FROM + i` for `i < 40` is delayed by
/// 200 ms + i × 60 ms (to 2.30 s: some fall due before the kill, some while no process
/// runs the queue) except the last four, delayed by 6 s (due after the restart: their
/// idempotency keys are checked while they wait), every third of those also with a
/// deadline; `i` from 40 on has only a deadline. Deadlines are an hour ahead: none may
/// expire. Every timed command has an idempotency key.
const TIMED_FROM: u64 = TOTAL + 10;
const DELAYED: u64 = 40;
const TIMED: u64 = 60;
const DEADLINE: Duration = Duration::from_secs(3600);

/// The delay and whether there is a deadline, for a timed command `n`.
fn timing_of(n: u64) -> Option<(Duration, bool)> {
    let i = n.checked_sub(TIMED_FROM).filter(|&i| i < TIMED)?;
    if i < DELAYED - 4 {
        Some((Duration::from_millis(200 + i * 60), i % 3 == 0))
    } else if i < DELAYED {
        Some((Duration::from_secs(6), i % 3 == 0))
    } else {
        Some((Duration::ZERO, true))
    }
}

/// The lane most commands run in: it keeps every finished command of the test (more
/// than it submits), for an hour.
fn work_lane() -> LaneConfig {
    LaneConfig::new(1, 8).with_retention(Retention::new(10_000, Duration::from_secs(3600)))
}

/// The idempotency key of timed command `n` (every timed command has one).
fn key_of(n: u64) -> String {
    format!("timed-{n}")
}

fn options_of(n: u64) -> SubmitOptions {
    let (delay, deadline) = timing_of(n).expect("a timed command");
    let mut options = SubmitOptions::new().with_key(key_of(n));
    if !delay.is_zero() {
        options = options.with_delay(delay);
    }
    if deadline {
        options = options.with_start_within(DEADLINE);
    }
    options
}

/// Milliseconds since the Unix epoch, as the store keeps times.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

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
        self.numbers(&[n]);
    }

    fn numbers(&self, numbers: &[u64]) {
        let line: Vec<String> = numbers.iter().map(u64::to_string).collect();
        (&*self.0)
            .write_all(format!("{}\n", line.join(" ")).as_bytes())
            .expect("append record");
    }
}

/// The lines of a record, each a list of numbers.
fn read_lines(path: &Path) -> Vec<Vec<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| {
                l.split(' ')
                    .map(|n| n.parse().expect("record line"))
                    .collect()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

fn read_record(path: &Path) -> Vec<u64> {
    read_lines(path).into_iter().map(|l| l[0]).collect()
}

/// A record of `n t₁ t₂` lines, by `n`.
fn read_times(path: &Path) -> BTreeMap<u64, (u64, u64)> {
    read_lines(path)
        .into_iter()
        .map(|l| (l[0], (l[1], l[2])))
        .collect()
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
        // Timed commands: `n before after` around their submit; `n run 0` when one ran.
        let timed = Record::open(&dir.join("timed-submitted"));
        let timed_runs = Record::open(&dir.join("timed-run-before-crash"));
        let completions = Arc::new(AtomicUsize::new(0));
        let store = Arc::new(LocalStorage::new(dir.join("store")).await.unwrap());
        let handler = {
            let done = done.clone();
            let completions = completions.clone();
            handler_fn(move |payload: Value, _ctx: CommandContext| {
                let done = done.clone();
                let completions = completions.clone();
                let timed_runs = timed_runs.clone();
                async move {
                    let n = payload["n"].as_u64().unwrap();
                    if timing_of(n).is_some() {
                        timed_runs.numbers(&[n, now_ms(), 0]);
                    }
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
            .with_lane("work", work_lane(), 0)
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
            submitted.numbers(&[n, handle.id()]);
            drop(handle);
        }
        // The timed commands, concurrently (they share commits), before the others.
        let mut timed_submits = Vec::new();
        for n in TIMED_FROM..TIMED_FROM + TIMED {
            let (manager, submitted, timed) = (manager.clone(), submitted.clone(), timed.clone());
            timed_submits.push(tokio::spawn(async move {
                let before = now_ms();
                let handle = manager
                    .submit_replayable_with("work", "job", json!({ "n": n }), &options_of(n))
                    .await
                    .unwrap();
                let after = now_ms();
                submitted.numbers(&[n, handle.id()]);
                timed.numbers(&[n, before, after]);
                drop(handle);
            }));
        }
        for submit in timed_submits {
            submit.await.unwrap();
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
                    submitted.numbers(&[n, handle.id()]);
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

    // Down for a while: some delayed commands fall due while no process runs the queue.
    std::thread::sleep(Duration::from_millis(300));

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
    let (stored, after, run_times, recovered_at, still_delayed, kept) = runtime.block_on(async {
        // What the store held at the crash, read before anything runs again.
        let store = LocalStorage::open(
            dir.path().join("store"),
            LocalStorageConfig::new().must_exist(),
        )
        .await
        .expect("the crashed store opens");
        let stored: BTreeMap<u64, StoredCommand> = store
            .load_commands()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.payload["n"].as_u64().unwrap(), c))
            .collect();
        let kept_at_crash = store.load_finished().await.unwrap();
        store.close().await.unwrap();

        // Recovery in this new process.
        let runs = Arc::new(parking_lot::Mutex::new(Vec::new()));
        // When each timed command ran here.
        let run_times = Arc::new(parking_lot::Mutex::new(HashMap::new()));
        let intact = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let store = Arc::new(LocalStorage::new(dir.path().join("store")).await.unwrap());
        let manager = QueueManagerBuilder::new(EventEmitter::new(16))
            .with_lane("work", work_lane(), 0)
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
                let (runs, run_times) = (runs.clone(), run_times.clone());
                handler_fn(move |payload: Value, _ctx: CommandContext| {
                    let n = payload["n"].as_u64().unwrap();
                    if timing_of(n).is_some() {
                        run_times.lock().insert(n, now_ms());
                    }
                    runs.lock().push(n);
                    async { Ok(Value::Null) }
                })
            })
            .build()
            .await
            .unwrap();
        let recovered_at = now_ms();
        manager.start().await.unwrap();
        // A recovered delayed command not yet due waits for the rest of its delay (the
        // margin keeps one falling due during the check out of it).
        let mut still_delayed = 0;
        for command in stored.values() {
            if let Some(not_before) = command.not_before
                && not_before > now_ms() + 500
            {
                let status = manager.queue().command_status(command.id);
                let state = status.map(|s| s.state);
                assert_eq!(
                    state,
                    Some(CommandState::Delayed),
                    "recovered delayed command {command:?}"
                );
                // It still holds its idempotency key: the same submit returns it.
                let n = command.payload["n"].as_u64().unwrap();
                let again = manager
                    .submit_replayable_with("work", "job", json!({ "n": n }), &options_of(n))
                    .await
                    .unwrap();
                assert!(
                    again.is_duplicate() && again.id() == command.id,
                    "recovered command {n} lost its key"
                );
                still_delayed += 1;
            }
        }
        assert!(
            still_delayed > 0,
            "no recovered command was still delayed, so no idempotency key was checked: the \
             6 s delays passed before the restart (a machine this slow needs longer ones)"
        );
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
        let kept_after = store.load_finished().await.unwrap();
        let after = runs.lock().clone();
        let mut intact = intact.lock().clone();
        intact.sort_unstable();
        assert_eq!(
            intact,
            HELD.iter().map(|&n| (n, true)).collect::<Vec<_>>(),
            "every payload at the limits comes back once, intact"
        );
        let run_times = run_times.lock().clone();
        let kept = (kept_at_crash, kept_after);
        (stored, after, run_times, recovered_at, still_delayed, kept)
    });
    let unfinished: BTreeSet<u64> = stored.keys().copied().collect();
    check_kept(&dir, &stored, &kept.0, &kept.1);
    check_timed(
        &dir,
        &acked,
        &stored,
        &run_times,
        recovered_at,
        still_delayed,
    );

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
        "crash test: {} submits acknowledged (of {TOTAL}, {} at the payload limits and {TIMED} \
         timed), {} completed before SIGKILL, {} unfinished in the store at the crash, {} of \
         them re-run although their handler had finished (at-least-once window), 0 lost",
        acked.len() - HELD.len() - TIMED as usize,
        HELD.len(),
        before_set.len(),
        unfinished.len(),
        duplicates.len()
    );
}

/// The timed commands: stored with the start time and deadline they were submitted
/// with, recovered, and never run before their start time (in the child or here).
fn check_timed(
    dir: &tempfile::TempDir,
    acked: &BTreeSet<u64>,
    stored: &BTreeMap<u64, StoredCommand>,
    run_times: &HashMap<u64, u64>,
    recovered_at: u64,
    still_delayed: usize,
) {
    let submitted = read_times(&dir.path().join("timed-submitted"));
    let ran_before = read_times(&dir.path().join("timed-run-before-crash"));
    let timed: Vec<u64> = (TIMED_FROM..TIMED_FROM + TIMED).collect();
    assert!(
        timed
            .iter()
            .all(|n| acked.contains(n) && submitted.contains_key(n)),
        "every timed command was acknowledged before the kill"
    );
    // Bounds of a time set at submit, `offset` after it.
    let window = |n: u64, offset: Duration| {
        let (before, after) = submitted[&n];
        let offset = offset.as_millis() as u64;
        before + offset..=after + offset
    };
    for (n, command) in stored {
        match timing_of(*n) {
            None => assert_eq!(
                (command.not_before, command.start_by, &command.key),
                (None, None, &None),
                "an untimed command has no times and no key: {command:?}"
            ),
            Some((delay, deadline)) => {
                assert_eq!(command.key, Some(key_of(*n)), "{n}: stored key");
                match command.not_before {
                    Some(at) if !delay.is_zero() => assert!(
                        window(*n, delay).contains(&at),
                        "{n}: stored start time {at}, submitted {:?} with delay {delay:?}",
                        submitted[n]
                    ),
                    None if delay.is_zero() => {}
                    other => panic!("{n}: stored start time {other:?}, delay {delay:?}"),
                }
                match command.start_by {
                    Some(by) if deadline => assert!(
                        window(*n, DEADLINE).contains(&by),
                        "{n}: stored deadline {by}, submitted {:?}",
                        submitted[n]
                    ),
                    None if !deadline => {}
                    other => panic!("{n}: stored deadline {other:?}, expected one: {deadline}"),
                }
            }
        }
    }
    for &n in &timed {
        let (delay, _) = timing_of(n).unwrap();
        // Never before its start time: in the child, the earliest it can be is the
        // submit plus the delay; here, the stored start time.
        if let Some(&(ran, _)) = ran_before.get(&n) {
            let earliest = submitted[&n].0 + delay.as_millis() as u64;
            assert!(
                ran >= earliest,
                "{n} ran at {ran} before the crash, due {earliest}"
            );
        }
        if let Some(command) = stored.get(&n) {
            let ran = run_times
                .get(&n)
                .unwrap_or_else(|| panic!("recovered timed command {n} never ran"));
            if let Some(at) = command.not_before {
                assert!(*ran >= at, "{n} ran at {ran} after the restart, due {at}");
            }
        } else {
            assert!(
                ran_before.contains_key(&n),
                "timed command {n} neither ran before the crash nor was in the store"
            );
        }
    }
    let delayed_ran_before = ran_before
        .keys()
        .filter(|&&n| timing_of(n).is_some_and(|(delay, _)| !delay.is_zero()))
        .count();
    let fell_due_while_down = stored
        .values()
        .filter(|c| c.not_before.is_some_and(|at| at <= recovered_at))
        .count();
    println!(
        "timed commands: {TIMED} acknowledged ({DELAYED} delayed 0.2 to {:.2} s or 6 s), {} ran \
         before SIGKILL ({delayed_ran_before} delayed ones, none early), {} in the store at \
         the crash ({fell_due_while_down} fell due while down, {still_delayed} still Delayed \
         after the restart), every delayed one run at or after its start time",
        (200 + (DELAYED - 5) * 60) as f64 / 1000.0,
        ran_before.len(),
        timed.iter().filter(|n| stored.contains_key(n)).count(),
    );
}

/// The records of finished commands: the crash loses none whose command's removal was
/// committed (one commit holds both), and after recovery every acknowledged command has
/// one.
fn check_kept(
    dir: &tempfile::TempDir,
    stored: &BTreeMap<u64, StoredCommand>,
    at_crash: &[StoredFinished],
    after: &[StoredFinished],
) {
    // `n id` of every acknowledged submit.
    let ids: BTreeMap<u64, u64> = read_lines(&dir.path().join("submitted"))
        .into_iter()
        .map(|l| (l[0], l[1]))
        .collect();
    let stored_ids: BTreeSet<u64> = stored.values().map(|c| c.id).collect();
    let check = |records: &[StoredFinished], when: &str| -> BTreeSet<u64> {
        let mut seen = BTreeSet::new();
        for record in records {
            let status = &record.status;
            assert!(seen.insert(status.id), "{when}: {} kept twice", status.id);
            assert_eq!(status.state, CommandState::Completed, "{when}: {status:?}");
            assert_eq!(status.result, Some(Value::Null), "{when}: {status:?}");
            assert_eq!(status.attempts, 1, "{when}: {status:?}");
            let (Some(submitted), Some(started), Some(finished)) = (
                status.submitted_at_ms,
                status.started_at_ms,
                status.finished_at_ms,
            ) else {
                panic!("{when}: a record without its times: {status:?}");
            };
            assert!(
                submitted <= started && started <= finished,
                "{when}: {status:?}"
            );
        }
        seen
    };
    let kept_at_crash = check(at_crash, "at the crash");
    // A command is in the store or has its record, never both, never neither.
    let both: Vec<&u64> = kept_at_crash.intersection(&stored_ids).collect();
    assert!(
        both.is_empty(),
        "commands both stored and kept as finished: {both:?}"
    );
    let neither: Vec<u64> = ids
        .iter()
        .filter(|(_, id)| !stored_ids.contains(id) && !kept_at_crash.contains(id))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        neither.is_empty(),
        "acknowledged commands neither in the store nor kept as finished at the crash: \
         {neither:?}"
    );
    let kept_after = check(after, "after recovery");
    let missing: Vec<u64> = ids
        .iter()
        .filter(|(_, id)| !kept_after.contains(id))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged commands without a record after recovery: {missing:?}"
    );
    println!(
        "finished commands: {} records kept at the crash (every acknowledged command not in \
         the store), {} after recovery (every acknowledged command)",
        kept_at_crash.len(),
        kept_after.len()
    );
}
