//! The crash test of recurring schedules: a child process runs a `LocalStorage`-backed
//! queue with a schedule firing every 50 ms and is killed with SIGKILL, then started
//! again on the same store, round after round (the kill lands at a different point
//! after an instant each time: while the instant's commit is in flight, just after it,
//! between instants). Each child logs the instants it fires (`queue.schedule.fired`:
//! instant and command id) and the schedule it found in the store when it started (its
//! last instant and that instant's command). From those and the store after the last
//! kill, this process checks that an instant's command and the schedule moved past the
//! instant are one commit (`StorageOp::FireSchedule`):
//!
//! - no instant fires twice, in one process or across the kills, and a restarted
//!   process fires only instants after the last one the store holds;
//! - every instant's command is in the store (unfinished, or kept as finished by its
//!   lane): none lost;
//! - every command of the schedule in the store is an instant's that the schedule
//!   counted (logged, or the last instant the store's schedule holds): no command was
//!   stored without the schedule moving past its instant, which a restart would fire
//!   again (or skip, losing track of it);
//! - the schedule's count of fired instants is the number of its commands.
//!
//! `harness = false`: `main` is the test; run with the env var below it is the child.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use a3s_lane::{
    CommandContext, EventEmitter, LaneConfig, LocalStorage, LocalStorageConfig,
    QueueManagerBuilder, Retention, Schedule, event_keys, handler_fn,
};
use serde_json::{Value, json};

const CHILD_DIR: &str = "A3S_LANE_SCHEDULE_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "A3S_LANE_SCHEDULE_CRASH_ROUND";
const SCHEDULE: &str = "tick";
const EVERY_MS: u64 = 50;
/// Rounds of start, fire, SIGKILL.
const ROUNDS: u64 = 12;
/// A child announces itself ready to be killed after firing this many instants.
const FIRES_BEFORE_READY: usize = 2;
/// When the kill lands, in ms after an instant (round `r` uses `KILL_OFFSETS_MS[r]`):
/// the first few inside the instant's commit (an fsync), the others after it.
const KILL_OFFSETS_MS: [u64; ROUNDS as usize] = [0, 1, 2, 3, 4, 6, 8, 11, 15, 22, 31, 42];
/// How long no process runs the queue after round `r`'s kill (`DOWN_MS[r]`): a restart
/// within the same interval, or after missing a few instants.
const DOWN_MS: [u64; ROUNDS as usize] = [0, 0, 30, 120, 0, 10, 70, 0, 200, 0, 45, 0];

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn main() {
    match std::env::var_os(CHILD_DIR) {
        Some(dir) => {
            let round = std::env::var(CHILD_ROUND)
                .ok()
                .and_then(|r| r.parse().ok())
                .expect("the round");
            child(PathBuf::from(dir), round);
        }
        None => parent(),
    }
}

/// Appends one line per call with a single `write` on an O_APPEND file: the kernel keeps
/// it when the process is killed.
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

/// The lane the schedule's commands go to: it keeps every finished one of the test.
fn lane() -> LaneConfig {
    LaneConfig::new(1, 4).with_retention(Retention::new(10_000, Duration::from_secs(3600)))
}

fn child(dir: PathBuf, round: u64) {
    // `round instant command_id` per instant fired.
    let fired = Record::open(&dir.join("fired"));
    // `round 1 last_instant last_command_id fired_count` (or `round 0 0 0 0`: none yet)
    // for the schedule found in the store at the start.
    let restored = Record::open(&dir.join("restored"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(LocalStorage::new(dir.join("store")).await.unwrap());
        let manager = QueueManagerBuilder::new(EventEmitter::new(1024))
            .with_lane("work", lane(), 0)
            .with_storage(store)
            .with_handler(
                "tick",
                handler_fn(|payload: Value, _ctx: CommandContext| async move { Ok(payload) }),
            )
            .build()
            .await
            .unwrap();
        let found = manager
            .queue()
            .schedules()
            .into_iter()
            .find(|info| info.schedule.name == SCHEDULE);
        match &found {
            Some(info) => restored.numbers(&[
                round,
                1,
                info.last_fired_at_ms.unwrap_or(0),
                info.last_command_id.unwrap_or(0),
                info.fired,
            ]),
            None => restored.numbers(&[round, 0, 0, 0, 0]),
        }
        // The events are logged on a thread of their own, so a busy runtime does not
        // hold a fired instant's line back until the kill.
        let mut events = manager.subscribe_filtered(|e| e.key == event_keys::SCHEDULE_FIRED);
        std::thread::spawn(move || {
            let logger = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            logger.block_on(async move {
                let mut seen = 0;
                while let Ok(event) = events.recv().await {
                    if event.payload["schedule"] != json!(SCHEDULE) {
                        continue;
                    }
                    let instant = event.payload["instant_ms"].as_u64().unwrap();
                    let id = event.payload["command_id"].as_u64().unwrap();
                    fired.numbers(&[round, instant, id]);
                    seen += 1;
                    if seen == FIRES_BEFORE_READY {
                        println!("READY");
                        std::io::stdout().flush().unwrap();
                    }
                }
            });
        });
        manager.start().await.unwrap();
        if found.is_none() {
            manager
                .queue()
                .put_schedule(Schedule::every(
                    SCHEDULE,
                    "work",
                    "tick",
                    json!({ "schedule": SCHEDULE }),
                    Duration::from_millis(EVERY_MS),
                ))
                .await
                .unwrap();
        }
        // Wait to be killed.
        std::future::pending::<()>().await;
    });
}

/// Runs round `round`'s child until it is ready, then kills it `offset_ms` after an
/// instant.
fn run_and_kill(dir: &Path, round: u64, offset_ms: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
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
                "round {round}: the child did not get ready: {other:?} (status {:?})",
                child.wait()
            );
        }
    }
    let now = now_ms();
    let kill_at = (now / EVERY_MS + 1) * EVERY_MS + offset_ms;
    std::thread::sleep(Duration::from_millis(kill_at - now));
    child.kill().expect("SIGKILL the child");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "round {round}: the child was killed, not finished: {status:?}"
    );
}

fn parent() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    for round in 0..ROUNDS {
        run_and_kill(dir.path(), round, KILL_OFFSETS_MS[round as usize]);
        std::thread::sleep(Duration::from_millis(DOWN_MS[round as usize]));
    }

    // The store after the last kill, read without running anything.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stored, finished, schedule) = runtime.block_on(async {
        let store = LocalStorage::open(
            dir.path().join("store"),
            LocalStorageConfig::new().must_exist(),
        )
        .await
        .expect("the crashed store opens");
        let stored: BTreeSet<u64> = store
            .load_commands()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.command_type == "tick")
            .map(|c| c.id)
            .collect();
        let finished: BTreeSet<u64> = store
            .load_finished()
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.status.command_type == "tick")
            .map(|f| f.status.id)
            .collect();
        let schedules = store.load_schedules().await.unwrap();
        store.close().await.unwrap();
        assert_eq!(schedules.len(), 1, "{schedules:?}");
        (stored, finished, schedules.into_iter().next().unwrap())
    });
    assert_eq!(schedule.schedule.name, SCHEDULE);
    let both: Vec<&u64> = stored.intersection(&finished).collect();
    assert!(
        both.is_empty(),
        "commands both stored and finished: {both:?}"
    );
    let in_store: BTreeSet<u64> = stored.union(&finished).copied().collect();

    let fired = read_lines(&dir.path().join("fired"));
    let restored = read_lines(&dir.path().join("restored"));
    assert_eq!(restored.len() as u64, ROUNDS, "every round started");

    // Each instant once: logged by at most one fire, in any process.
    let mut instants: BTreeMap<u64, u64> = BTreeMap::new();
    let mut ids: BTreeMap<u64, u64> = BTreeMap::new();
    for line in &fired {
        let (round, instant, id) = (line[0], line[1], line[2]);
        assert_eq!(instant % EVERY_MS, 0, "round {round}: instant {instant}");
        if let Some(first) = instants.insert(instant, id) {
            panic!("instant {instant} fired twice: commands {first} and {id} (round {round})");
        }
        assert!(
            ids.insert(id, instant).is_none(),
            "command {id} logged twice"
        );
    }
    // The last instant the store's schedule held at each start (and now): the same
    // instant as logged, with the same command, or one whose line the kill cut off.
    let mut known_at_start: BTreeMap<u64, u64> = BTreeMap::new();
    let last_known = restored
        .iter()
        .filter(|line| line[1] == 1)
        .map(|line| (line[0], line[2], line[3]))
        .chain(std::iter::once((
            ROUNDS,
            schedule.last_fired_at_ms.unwrap_or(0),
            schedule.last_command_id.unwrap_or(0),
        )));
    let mut unlogged = 0;
    for (round, instant, id) in last_known {
        known_at_start.insert(round, instant);
        if instant == 0 {
            continue;
        }
        match instants.get(&instant) {
            Some(&logged) => assert_eq!(
                logged, id,
                "round {round}: the store's schedule says instant {instant} submitted {id}, \
                 its fire said {logged}"
            ),
            None => {
                assert!(
                    ids.insert(id, instant).is_none(),
                    "command {id} is two instants'"
                );
                instants.insert(instant, id);
                unlogged += 1;
            }
        }
    }
    // A restarted process fires only instants after the last one the store held.
    for line in &fired {
        let (round, instant) = (line[0], line[1]);
        if let Some(&last) = known_at_start.get(&round) {
            assert!(
                instant > last,
                "round {round} fired instant {instant}, at or before the last one the store \
                 held ({last})"
            );
        }
    }
    // None lost: every instant's command is in the store.
    let lost: Vec<(&u64, &u64)> = instants
        .iter()
        .filter(|(_, id)| !in_store.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "instants whose command is not in the store: {lost:?}"
    );
    // None stored without the schedule moving past its instant.
    let orphans: Vec<&u64> = in_store.iter().filter(|id| !ids.contains_key(id)).collect();
    assert!(
        orphans.is_empty(),
        "commands of the schedule that no instant accounts for (stored without their \
         schedule): {orphans:?}"
    );
    assert_eq!(
        schedule.fired,
        in_store.len() as u64,
        "the schedule's count of fired instants"
    );
    assert!(
        fired.len() >= (ROUNDS as usize) * FIRES_BEFORE_READY,
        "every round fired"
    );
    let elapsed = started.elapsed();
    println!(
        "schedule crash test: {ROUNDS} SIGKILLs at 0 to 42 ms after an instant, {} instants \
         fired (every {EVERY_MS} ms; {} logged, {unlogged} known only from the store), each \
         once, each with its command in the store ({} unfinished, {} finished), none \
         without its instant; {elapsed:.1?}",
        instants.len(),
        fired.len(),
        stored.len(),
        finished.len()
    );
}
