//! Recurring schedules in `LocalStorage` (`StorageOp::SaveSchedule`, `RemoveSchedule`,
//! `FireSchedule`, `Storage::load_schedules`): put, replaced by name, removed, loaded
//! after a reopen; an instant's command and the schedule moved past the instant are
//! stored together or not at all; `clear_all` forgets them; a schedule that cannot be
//! read back fails loading, naming it, and salvage copies the readable ones.

use std::path::Path;
use std::time::Duration;

use a3s_lane::{LocalStorage, Missed, Schedule, ScheduleInfo, Storage, StorageOp, StoredCommand};
use rusqlite::Connection;
use serde_json::json;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Schedule `name` of lane `jobs`, every `every_ms`, put now.
fn every(name: &str, every_ms: u64) -> ScheduleInfo {
    let schedule = Schedule::every(
        name,
        "jobs",
        "job",
        json!({ "schedule": name }),
        Duration::from_millis(every_ms),
    );
    ScheduleInfo::new(schedule, now_ms()).unwrap()
}

/// A nightly schedule in Berlin that runs a missed night once, with jitter.
fn nightly() -> ScheduleInfo {
    let schedule = Schedule::cron(
        "nightly",
        "jobs",
        "report",
        json!({ "deep": [[{ "a": 1 }]] }),
        "0 3 * * *",
        "Europe/Berlin",
    )
    .with_missed(Missed::RunOnce)
    .with_jitter(Duration::from_secs(30));
    ScheduleInfo::new(schedule, now_ms()).unwrap()
}

/// The command `info` submits at an instant, with id `id`.
fn command_of(info: &ScheduleInfo, id: u64) -> StoredCommand {
    StoredCommand {
        id,
        lane_id: info.schedule.lane.clone(),
        command_type: info.schedule.command_type.clone(),
        payload: info.schedule.payload.clone(),
        attempts: 0,
        created_at: now_ms(),
        not_before: None,
        start_by: None,
        key: None,
        group: None,
        replayable: true,
    }
}

/// `info` fired at its next instant with command `id`: moved past the instant.
fn fired(info: &ScheduleInfo, id: u64) -> ScheduleInfo {
    let instant = info.next_fire_at_ms.unwrap();
    let mut after = info.clone();
    after.next_fire_at_ms = info.schedule.next_after(instant).unwrap();
    after.last_fired_at_ms = Some(instant);
    after.last_command_id = Some(id);
    after.fired += 1;
    after
}

fn fire(info: &ScheduleInfo, id: u64) -> (StorageOp, ScheduleInfo, StoredCommand) {
    let after = fired(info, id);
    let command = command_of(info, id);
    let op = StorageOp::FireSchedule {
        command: command.clone(),
        schedule: Box::new(after.clone()),
    };
    (op, after, command)
}

fn rows_in_file(dir: &Path) -> i64 {
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    conn.query_row("SELECT count(*) FROM schedules", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn schedules_are_put_replaced_by_name_removed_and_kept_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    assert_eq!(store.load_schedules().await.unwrap(), []);
    let tick = every("tick", 50);
    let night = nightly();
    store.save_schedule(tick.clone()).await.unwrap();
    store
        .apply(vec![StorageOp::SaveSchedule(night.clone())])
        .await
        .unwrap();
    // By name.
    assert_eq!(
        store.load_schedules().await.unwrap(),
        [night.clone(), tick.clone()]
    );
    // The same name replaces: paused, other counts, another interval.
    let mut replaced = every("tick", 60_000);
    replaced.paused = true;
    replaced.skipped = 3;
    store.save_schedule(replaced.clone()).await.unwrap();
    assert_eq!(
        store.load_schedules().await.unwrap(),
        [night.clone(), replaced.clone()]
    );
    store.close().await.unwrap();
    assert_eq!(rows_in_file(dir.path()), 2);

    let store = LocalStorage::new(dir.path()).await.unwrap();
    assert_eq!(
        store.load_schedules().await.unwrap(),
        [night.clone(), replaced]
    );
    store.remove_schedule("tick").await.unwrap();
    // An unknown name is not an error.
    store
        .apply(vec![StorageOp::RemoveSchedule("missing".into())])
        .await
        .unwrap();
    assert_eq!(
        store.load_schedules().await.unwrap(),
        std::slice::from_ref(&night)
    );
    store.close().await.unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    assert_eq!(store.load_schedules().await.unwrap(), [night]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn an_instant_fired_stores_its_command_and_the_schedule_past_it_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    let tick = every("tick", 50);
    store.save_schedule(tick.clone()).await.unwrap();
    let (op, after, command) = fire(&tick, 7);
    store.apply(vec![op]).await.unwrap();
    assert_eq!(
        store.load_commands().await.unwrap(),
        std::slice::from_ref(&command)
    );
    assert_eq!(
        store.load_schedules().await.unwrap(),
        std::slice::from_ref(&after)
    );
    // The command's id counts toward the high-water mark.
    assert_eq!(store.max_command_id().await.unwrap(), 7);
    store.close().await.unwrap();

    // A store that refuses the schedule's half (a trigger stands in for a failure after
    // the command is written: a full disk, an I/O error): the command is not stored
    // either, and the other writes of the commit are.
    {
        let conn = Connection::open(dir.path().join("lane.db")).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE UPDATE ON schedules \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;
             CREATE TRIGGER refuse_insert BEFORE INSERT ON schedules \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .unwrap();
    }
    let store = LocalStorage::new(dir.path()).await.unwrap();
    let (op, _, _) = fire(&after, 8);
    let other = StoredCommand {
        id: 9,
        ..command.clone()
    };
    // Concurrent writes share one commit; each fails or succeeds alone.
    let (refused, saved) = tokio::join!(
        store.apply(vec![op]),
        store.apply(vec![StorageOp::SaveCommand(other.clone())])
    );
    let error = refused.unwrap_err();
    assert!(error.to_string().contains("refused by the test"), "{error}");
    saved.unwrap();
    assert_eq!(
        store.load_commands().await.unwrap(),
        [command.clone(), other.clone()],
        "instant 8's command was not stored without its schedule"
    );
    assert_eq!(
        store.load_schedules().await.unwrap(),
        std::slice::from_ref(&after)
    );
    // The fire before the failure in the same batch is undone with it: one write, one
    // savepoint.
    let (op, _, _) = fire(&after, 10);
    let error = store
        .apply(vec![StorageOp::SaveCommand(command_of(&after, 11)), op])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("refused by the test"), "{error}");
    assert_eq!(
        store.load_commands().await.unwrap(),
        [command.clone(), other.clone()]
    );
    store.close().await.unwrap();
    {
        let conn = Connection::open(dir.path().join("lane.db")).unwrap();
        conn.execute_batch("DROP TRIGGER refuse; DROP TRIGGER refuse_insert;")
            .unwrap();
    }
    let store = LocalStorage::new(dir.path()).await.unwrap();
    let (op, again, next) = fire(&after, 12);
    store.apply(vec![op]).await.unwrap();
    assert_eq!(store.load_schedules().await.unwrap(), [again]);
    assert_eq!(store.load_commands().await.unwrap(), [command, other, next]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn clear_all_forgets_the_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    let tick = every("tick", 50);
    store.save_schedule(nightly()).await.unwrap();
    let (op, _, _) = fire(&tick, 4);
    store.apply(vec![op]).await.unwrap();
    store.clear_all().await.unwrap();
    assert_eq!(store.load_schedules().await.unwrap(), []);
    assert_eq!(store.load_commands().await.unwrap(), []);
    assert_eq!(store.max_command_id().await.unwrap(), 4);
    store.close().await.unwrap();
    assert_eq!(rows_in_file(dir.path()), 0);
}

/// Breaks `lane.db`'s header, so that the store is refused as damaged.
fn break_header(dir: &Path) {
    let db = dir.join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, bytes).unwrap();
}

#[tokio::test]
async fn a_schedule_that_cannot_be_read_back_fails_loading_and_salvage_copies_the_others() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    let store = LocalStorage::new(&dir).await.unwrap();
    let tick = every("tick", 50);
    let (op, tick, command) = fire(&tick, 3);
    store.apply(vec![op]).await.unwrap();
    store.save_schedule(nightly()).await.unwrap();
    store
        .save_schedule(every("hourly", 3_600_000))
        .await
        .unwrap();
    store.close().await.unwrap();
    {
        let conn = Connection::open(dir.join("lane.db")).unwrap();
        conn.execute_batch(
            "UPDATE schedules SET info = '{not json' WHERE name = 'nightly';
             UPDATE schedules SET info = replace(info, '\"hourly\"', '\"other\"') \
             WHERE name = 'hourly';",
        )
        .unwrap();
    }

    // The store opens (its files are sound), but a queue must not start without a
    // schedule it was given: loading them fails, naming one, saying what to do.
    let store = LocalStorage::new(&dir).await.unwrap();
    let error = store.load_schedules().await.unwrap_err();
    let message = error.to_string();
    for words in ["damaged", "cannot be read back", "LocalStorage::salvage"] {
        assert!(message.contains(words), "{message}");
    }
    assert!(
        message.contains("\"hourly\"") || message.contains("\"nightly\""),
        "{message}"
    );
    // Nothing else is affected.
    assert_eq!(
        store.load_commands().await.unwrap(),
        std::slice::from_ref(&command)
    );
    store.close().await.unwrap();

    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!((report.commands, report.schedules), (1, 1), "{report:#?}");
    let mut skipped: Vec<&str> = report
        .unreadable
        .iter()
        .filter(|rows| rows.table == "schedules")
        .map(|rows| rows.reason.as_str())
        .collect();
    skipped.sort_unstable();
    assert_eq!(skipped.len(), 2, "{report:#?}");
    assert!(
        skipped[0].contains("\"hourly\"") && skipped[0].contains("not the row's name"),
        "{skipped:?}"
    );
    assert!(skipped[1].contains("\"nightly\""), "{skipped:?}");
    let store = LocalStorage::new(&salvaged).await.unwrap();
    assert_eq!(store.load_schedules().await.unwrap(), [tick]);
    assert_eq!(store.load_commands().await.unwrap(), [command]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn salvage_copies_the_schedules_as_they_stood() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    let store = LocalStorage::new(&dir).await.unwrap();
    let mut paused = nightly();
    paused.paused = true;
    paused.skipped = 2;
    store.save_schedule(paused).await.unwrap();
    let tick = every("tick", 50);
    let (op, tick, command) = fire(&tick, 5);
    store.apply(vec![op]).await.unwrap();
    let schedules = store.load_schedules().await.unwrap();
    store.close().await.unwrap();
    break_header(&dir);
    assert!(LocalStorage::new(&dir).await.is_err(), "refused as damaged");

    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!((report.commands, report.schedules), (1, 2), "{report:#?}");
    assert!(report.unreadable.is_empty(), "{report:#?}");
    let store = LocalStorage::new(&salvaged).await.unwrap();
    assert_eq!(store.load_schedules().await.unwrap(), schedules);
    assert_eq!(store.load_commands().await.unwrap(), [command]);
    assert_eq!(store.max_command_id().await.unwrap(), 5);
    // The copy goes on as the store would have: the next instant fires.
    let (op, after, _) = fire(&tick, 6);
    store.apply(vec![op]).await.unwrap();
    assert!(store.load_schedules().await.unwrap().contains(&after));
    store.close().await.unwrap();
}
