//! Stores of other schema versions: a store written by version 1 (before delayed
//! commands and start-by deadlines were stored), version 2 (before finished commands
//! were kept), version 3 (before recurring schedules were kept) or version 4 (before
//! commands had groups inside their lanes) opens, keeps every command (and finished
//! command's record, and schedule), its commands in no group, and is migrated in place to
//! version 6, but only once it has passed the checks that refuse a damaged store
//! untouched; a store of a newer version is refused untouched, naming the version;
//! salvage reads every version and writes version 6. A version 5 store (before commands
//! that cannot be replayed were recorded) opens the same way, every command replayable.
//!
//! The version 1, 2, 3 and 4 stores are built by hand with the schema and pragmas those
//! versions wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use a3s_lane::{
    CommandState, CommandStatus, LaneError, LocalStorage, Schedule, ScheduleInfo, Storage,
    StorageOp, StoredCommand, StoredFinished,
};
use rusqlite::Connection;
use serde_json::json;

/// The schema of version 1, as `lane-reliability` created it.
const V1_SCHEMA: &str = "
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    lane_id TEXT NOT NULL,
    command_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id INTEGER NOT NULL UNIQUE,
    command_type TEXT NOT NULL,
    lane_id TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    payload TEXT
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('max_command_id', 0);
";
/// The schema of version 2, as `lane-reliability` created it.
const V2_SCHEMA: &str = "
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    lane_id TEXT NOT NULL,
    command_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    not_before INTEGER,
    start_by INTEGER,
    idempotency_key TEXT
);
CREATE TABLE dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id INTEGER NOT NULL UNIQUE,
    command_type TEXT NOT NULL,
    lane_id TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    payload TEXT
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('max_command_id', 0);
";
/// The table of finished commands version 3 added, as `lane-reliability` created it
/// (version 3's schema is [`V2_SCHEMA`] followed by this).
const V3_FINISHED: &str = "
CREATE TABLE finished (
    id INTEGER PRIMARY KEY,
    lane_id TEXT NOT NULL,
    state TEXT NOT NULL,
    command_type TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    submitted_at INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    result TEXT,
    error TEXT,
    keep_last INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    lane_seq INTEGER NOT NULL
);
CREATE INDEX finished_by_lane_state ON finished (lane_id, state, lane_seq);
CREATE INDEX finished_by_expiry ON finished (expires_at);
CREATE INDEX finished_by_seq ON finished (seq);
";
/// The table of recurring schedules version 4 added, as `lane-reliability` created it
/// (version 4's schema is [`V2_SCHEMA`], [`V3_FINISHED`], then this).
const V4_SCHEDULES: &str = "
CREATE TABLE schedules (
    name TEXT PRIMARY KEY NOT NULL,
    info TEXT NOT NULL
);
";
const APPLICATION_ID: i32 = 0x4133_534c;
/// The highest id a version 1 store below has handed out (its command 10 finished).
const V1_MAX_ID: u64 = 10;

/// Command `id` as the version 1 stores below hold it.
fn v1_command(id: u64) -> StoredCommand {
    StoredCommand {
        id,
        lane_id: "work".into(),
        command_type: "job".into(),
        payload: json!({ "n": id }),
        attempts: (id % 2) as u32,
        created_at: 1_700_000_000_000 + id,
        not_before: None,
        start_by: None,
        key: None,
        group: None,
        replayable: true,
    }
}

fn insert_v1(conn: &Connection, ids: impl IntoIterator<Item = u64>) {
    for id in ids {
        let c = v1_command(id);
        conn.execute(
            "INSERT INTO commands (id, lane_id, command_type, payload, attempts, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                c.id as i64,
                c.lane_id,
                c.command_type,
                c.payload.to_string(),
                c.attempts,
                c.created_at as i64
            ],
        )
        .unwrap();
    }
}

/// A version 1 store in `dir`, closed cleanly: commands 1..=6, one dead letter (id 9),
/// id high-water mark 10. Created as version 1 created its stores (rollback journal,
/// then switched to WAL by its first open).
fn v1_store(dir: &Path) -> Connection {
    std::fs::create_dir_all(dir).unwrap();
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute_batch(&format!("BEGIN; {V1_SCHEMA} COMMIT;"))
        .unwrap();
    insert_v1(&conn, 1..=6);
    conn.execute(
        "INSERT INTO dead_letters \
         (command_id, command_type, lane_id, error, attempts, failed_at, payload) \
         VALUES (9, 'job', 'work', 'boom', 3, 1700000000099, '{\"n\":9}')",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'max_command_id'",
        [V1_MAX_ID as i64],
    )
    .unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn
}

/// The files a process leaves when it dies while `conn` has commits in the WAL:
/// `lane.db` and `lane.db-wal` copied into `to` while `conn` is still open.
fn crash_image(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["lane.db", "lane.db-wal"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
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

/// The schema version in `lane.db`'s header, read from its bytes.
fn header_version(dir: &Path) -> i32 {
    let bytes = std::fs::read(dir.join("lane.db")).unwrap();
    i32::from_be_bytes([bytes[60], bytes[61], bytes[62], bytes[63]])
}

/// The schema version and the columns of `commands` of the closed store in `dir`.
fn schema_of(dir: &Path) -> (i32, Vec<String>) {
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    let version = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    (version, columns_of(&conn, "commands"))
}

fn columns_of(conn: &Connection, table: &str) -> Vec<String> {
    conn.prepare(&format!(
        "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
    ))
    .unwrap()
    .query_map([], |row| row.get(0))
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// Every column of `table` of the closed store in `dir` as SQLite describes it: name,
/// type, NOT NULL, default, primary key.
fn column_definitions(dir: &Path, table: &str) -> Vec<(String, String, bool, Option<String>, i64)> {
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    conn.prepare(&format!(
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{table}') \
         ORDER BY cid"
    ))
    .unwrap()
    .query_map([], |row| {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// Checks that the closed store in `dir` has the schema of version 6: version 2's
/// commands with each one's group (version 5) and whether it is replayable (version 6),
/// the table of finished commands with its
/// indexes (version 3) and the table of recurring schedules (version 4), exactly as a
/// new store has them.
async fn assert_version_6(dir: &Path) {
    assert_eq!(schema_of(dir), (6, v6_columns()));
    let definitions = |dir: &Path| -> Vec<(String, String)> {
        let conn = Connection::open(dir.join("lane.db")).unwrap();
        conn.prepare(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name IN ('finished', 'schedules') \
             AND sql IS NOT NULL ORDER BY name",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    };
    // A new store's definitions, as LocalStorage creates one.
    let fresh = tempfile::tempdir().unwrap();
    LocalStorage::new(fresh.path())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    assert_eq!(
        column_definitions(dir, "commands"),
        column_definitions(fresh.path(), "commands"),
        "commands migrated as a new store has them"
    );
    let expected = definitions(fresh.path());
    let names: Vec<&str> = expected.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "finished",
            "finished_by_expiry",
            "finished_by_lane_state",
            "finished_by_seq",
            "schedules"
        ]
    );
    assert_eq!(
        definitions(dir),
        expected,
        "migrated as a new store is made"
    );
}

fn v2_columns() -> Vec<String> {
    [
        "id",
        "lane_id",
        "command_type",
        "payload",
        "attempts",
        "created_at",
        "not_before",
        "start_by",
        "idempotency_key",
    ]
    .map(String::from)
    .to_vec()
}

fn v6_columns() -> Vec<String> {
    let mut columns = v2_columns();
    columns.push("group_key".into());
    columns.push("replayable".into());
    columns
}

/// A command with both times and a key set, as a delayed submit with a deadline and an
/// idempotency key stores it.
fn timed(id: u64) -> StoredCommand {
    StoredCommand {
        not_before: Some(1_900_000_000_000 + id),
        start_by: Some(1_900_000_360_000 + id),
        key: Some(format!("report-{id}")),
        ..v1_command(id)
    }
}

/// Opens `dir`, expects exactly `commands` and the version 1 dead letter, checks the id
/// high-water mark, then closes it.
async fn expect_store(dir: &Path, commands: &[StoredCommand]) {
    let store = LocalStorage::new(dir).await.expect("the store opens");
    assert!(!store.was_created());
    assert_eq!(store.load_commands().await.unwrap(), commands);
    let letters = store.load_dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0].command_id, letters[0].payload.clone()),
        (9, Some(json!({ "n": 9 })))
    );
    assert!(store.max_command_id().await.unwrap() >= V1_MAX_ID);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_version_1_store_opens_keeps_its_commands_and_is_migrated() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    drop(v1_store(&dir));
    assert_eq!(header_version(&dir), 1);
    let v1: Vec<StoredCommand> = (1..=6).map(v1_command).collect();

    let store = LocalStorage::new(&dir)
        .await
        .expect("a version 1 store opens");
    assert_eq!(store.load_commands().await.unwrap(), v1);
    assert_eq!(store.max_command_id().await.unwrap(), V1_MAX_ID);
    // The new columns are there at once: a timed command is stored whole.
    store.save_command(timed(11)).await.unwrap();
    store.close().await.unwrap();

    assert_eq!(header_version(&dir), 6, "the migration reached lane.db");
    assert_version_6(&dir).await;
    let mut all = v1;
    all.push(timed(11));
    expect_store(&dir, &all).await;
}

#[tokio::test]
async fn a_version_1_crash_image_is_migrated_with_the_commands_of_its_wal() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v1_store(&live);
    // Commits of the dying process, only in its WAL.
    insert_v1(&conn, 7..=8);
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    assert_eq!(header_version(&dir), 1);
    assert!(std::fs::metadata(dir.join("lane.db-wal")).unwrap().len() > 0);

    let expected: Vec<StoredCommand> = (1..=8).map(v1_command).collect();
    expect_store(&dir, &expected).await;
    assert_version_6(&dir).await;
}

#[tokio::test]
async fn a_migration_still_in_the_wal_is_not_damage() {
    // The process died after migrating, before the migration reached lane.db: its
    // header says 1, the WAL says 2.
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v1_store(&live);
    conn.execute_batch(
        "BEGIN;
         ALTER TABLE commands ADD COLUMN not_before INTEGER;
         ALTER TABLE commands ADD COLUMN start_by INTEGER;
         ALTER TABLE commands ADD COLUMN idempotency_key TEXT;
         PRAGMA user_version = 2;
         COMMIT;",
    )
    .unwrap();
    let t = timed(7);
    conn.execute(
        "INSERT INTO commands \
         (id, lane_id, command_type, payload, attempts, created_at, not_before, start_by, \
         idempotency_key) VALUES (7, 'work', 'job', '{\"n\":7}', 1, ?1, ?2, ?3, ?4)",
        rusqlite::params![
            t.created_at as i64,
            t.not_before.unwrap() as i64,
            t.start_by.unwrap() as i64,
            t.key
        ],
    )
    .unwrap();
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    assert_eq!(header_version(&dir), 1);

    let mut expected: Vec<StoredCommand> = (1..=6).map(v1_command).collect();
    expected.push(t);
    expect_store(&dir, &expected).await;
    assert_version_6(&dir).await;
}

#[tokio::test]
async fn a_damaged_version_1_store_is_refused_unmigrated_and_salvaged_into_version_6() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v1_store(&live);
    insert_v1(&conn, 7..=8);
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    // A WAL whose header is overwritten: SQLite would open the store without its
    // commits (and migrating it would write over them).
    let wal = dir.join("lane.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[..32].fill(0xa5);
    std::fs::write(&wal, bytes).unwrap();
    let before = snapshot(&dir);

    match LocalStorage::new(&dir).await {
        Err(LaneError::Storage(message)) => {
            assert!(message.contains("not a WAL header"), "{message}");
        }
        other => panic!("a damaged version 1 store must be refused: {other:?}"),
    }
    assert_eq!(snapshot(&dir), before, "the refused store was changed");
    assert_eq!(header_version(&dir), 1);

    // A damaged lane.db header instead (the WAL intact): salvage reads version 1 and
    // writes version 6 with every command.
    let dir = base.path().join("header");
    let conn = v1_store(&dir);
    drop(conn);
    let db = dir.join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, bytes).unwrap();
    let before = snapshot(&dir);
    assert!(LocalStorage::new(&dir).await.is_err());
    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!(snapshot(&dir), before, "salvage changed the damaged store");
    assert_eq!(
        (report.commands, report.dead_letters),
        (6, 1),
        "{report:#?}"
    );
    assert!(report.unreadable.is_empty(), "{report:#?}");
    assert_version_6(&salvaged).await;
    let expected: Vec<StoredCommand> = (1..=6).map(v1_command).collect();
    expect_store(&salvaged, &expected).await;
}

#[tokio::test]
async fn salvage_keeps_the_times_of_a_version_2_store() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    let store = LocalStorage::new(&dir).await.unwrap();
    let commands = vec![timed(1), v1_command(2), timed(3)];
    for command in &commands {
        store.save_command(command.clone()).await.unwrap();
    }
    store.close().await.unwrap();
    let db = dir.join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, bytes).unwrap();

    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!(report.commands, 3, "{report:#?}");
    let store = LocalStorage::new(&salvaged).await.unwrap();
    assert_eq!(store.load_commands().await.unwrap(), commands);
    store.close().await.unwrap();
}

/// A store in `dir` whose schema a newer a3s-lane (version 7) wrote: in `lane.db`'s
/// header, or (`in_wal`) only in the WAL of a process that died.
async fn newer_store(base: &Path, in_wal: bool) -> PathBuf {
    let live = base.join(if in_wal { "live" } else { "newer" });
    let store = LocalStorage::new(&live).await.unwrap();
    store.save_command(timed(1)).await.unwrap();
    store.close().await.unwrap();
    let conn = Connection::open(live.join("lane.db")).unwrap();
    conn.execute_batch(
        "ALTER TABLE commands ADD COLUMN priority INTEGER; PRAGMA user_version = 7;",
    )
    .unwrap();
    if !in_wal {
        drop(conn);
        assert_eq!(header_version(&live), 7);
        return live;
    }
    let dir = base.join("newer-in-wal");
    crash_image(&live, &dir);
    drop(conn);
    assert_eq!(header_version(&dir), 6);
    dir
}

#[tokio::test]
async fn a_store_of_a_newer_version_is_refused_untouched() {
    let base = tempfile::tempdir().unwrap();
    for in_wal in [false, true] {
        let dir = newer_store(base.path(), in_wal).await;
        let before = snapshot(&dir);
        match LocalStorage::new(&dir).await {
            Err(LaneError::Storage(message)) => {
                for words in ["newer a3s-lane", "schema version 7", "versions 1 to 6"] {
                    assert!(message.contains(words), "{message}");
                }
            }
            other => panic!("a newer store must be refused (in_wal: {in_wal}): {other:?}"),
        }
        assert_eq!(snapshot(&dir), before, "the refused store was changed");
    }
    // Salvage would drop what the newer version stores: it refuses too.
    let dir = base.path().join("newer");
    let error = LocalStorage::salvage(&dir, base.path().join("salvaged"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("newer a3s-lane"), "{error}");
    assert!(!base.path().join("salvaged").join("lane.db").exists());
}

/// Command `id` as the version 2 stores below hold it: odd ones delayed, with a deadline
/// and a key.
fn v2_command(id: u64) -> StoredCommand {
    if id % 2 == 1 {
        timed(id)
    } else {
        v1_command(id)
    }
}

fn insert_v2(conn: &Connection, ids: impl IntoIterator<Item = u64>) {
    for id in ids {
        let c = v2_command(id);
        conn.execute(
            "INSERT INTO commands (id, lane_id, command_type, payload, attempts, created_at, \
             not_before, start_by, idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                c.id as i64,
                c.lane_id,
                c.command_type,
                c.payload.to_string(),
                c.attempts,
                c.created_at as i64,
                c.not_before.map(|t| t as i64),
                c.start_by.map(|t| t as i64),
                c.key,
            ],
        )
        .unwrap();
    }
}

/// A version 2 store in `dir`, closed cleanly: commands 1..=6, one dead letter (id 9),
/// id high-water mark 10. Created as version 2 created its stores (rollback journal,
/// then switched to WAL by its first open).
fn v2_store(dir: &Path) -> Connection {
    std::fs::create_dir_all(dir).unwrap();
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute_batch(&format!("BEGIN; {V2_SCHEMA} COMMIT;"))
        .unwrap();
    insert_v2(&conn, 1..=6);
    conn.execute(
        "INSERT INTO dead_letters \
         (command_id, command_type, lane_id, error, attempts, failed_at, payload) \
         VALUES (9, 'job', 'work', 'boom', 3, 1700000000099, '{\"n\":9}')",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'max_command_id'",
        [V1_MAX_ID as i64],
    )
    .unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn
}

/// Command `id` finished and kept by its lane (the last 100 of its state, for a day).
fn finished(id: u64) -> StoredFinished {
    let mut status = CommandStatus::new(id, "work", "job", CommandState::Completed, 1);
    status.submitted_at_ms = Some(1_700_000_000_000 + id);
    status.started_at_ms = Some(1_700_000_000_100 + id);
    status.finished_at_ms = Some(now_ms());
    status.result = Some(json!({ "done": id }));
    StoredFinished {
        status,
        keep_last: 100,
        expires_at_ms: now_ms() + 24 * 3600 * 1000,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_version_2_store_opens_keeps_its_commands_and_is_migrated_to_keep_finished_ones() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    drop(v2_store(&dir));
    assert_eq!(header_version(&dir), 2);
    let v2: Vec<StoredCommand> = (1..=6).map(v2_command).collect();

    let store = LocalStorage::new(&dir)
        .await
        .expect("a version 2 store opens");
    assert_eq!(store.load_commands().await.unwrap(), v2);
    assert_eq!(store.load_finished().await.unwrap(), []);
    assert_eq!(store.max_command_id().await.unwrap(), V1_MAX_ID);
    // The new table is there at once: command 3 finishes and its record is kept.
    let record = finished(3);
    store
        .apply(vec![StorageOp::SaveFinished(record.clone())])
        .await
        .unwrap();
    store.close().await.unwrap();

    assert_eq!(header_version(&dir), 6, "the migration reached lane.db");
    assert_version_6(&dir).await;
    let rest: Vec<StoredCommand> = v2.into_iter().filter(|c| c.id != 3).collect();
    expect_store(&dir, &rest).await;
    let store = LocalStorage::new(&dir).await.unwrap();
    assert_eq!(store.load_finished().await.unwrap(), [record]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_version_2_crash_image_is_migrated_with_the_commands_of_its_wal() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v2_store(&live);
    // Commits of the dying process, only in its WAL.
    insert_v2(&conn, 7..=8);
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    assert_eq!(header_version(&dir), 2);
    assert!(std::fs::metadata(dir.join("lane.db-wal")).unwrap().len() > 0);

    let expected: Vec<StoredCommand> = (1..=8).map(v2_command).collect();
    expect_store(&dir, &expected).await;
    assert_version_6(&dir).await;
}

#[tokio::test]
async fn a_damaged_version_2_store_is_refused_unmigrated() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v2_store(&live);
    insert_v2(&conn, 7..=8);
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    // A WAL whose header is overwritten: SQLite would open the store without its
    // commits (and migrating it would write over them).
    let wal = dir.join("lane.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[..32].fill(0xa5);
    std::fs::write(&wal, bytes).unwrap();
    let before = snapshot(&dir);

    match LocalStorage::new(&dir).await {
        Err(LaneError::Storage(message)) => {
            assert!(message.contains("not a WAL header"), "{message}");
        }
        other => panic!("a damaged version 2 store must be refused: {other:?}"),
    }
    assert_eq!(snapshot(&dir), before, "the refused store was changed");
    assert_eq!(header_version(&dir), 2);
}

/// Records `records` in a version 3 store's `finished` table as version 3 stored them
/// (each the newest of its lane and state).
fn insert_v3_finished(conn: &Connection, records: &[StoredFinished]) {
    for (i, record) in records.iter().enumerate() {
        let status = &record.status;
        conn.execute(
            "INSERT INTO finished (id, lane_id, state, command_type, attempts, submitted_at, \
             started_at, finished_at, result, error, keep_last, expires_at, seq, lane_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12, ?12)",
            rusqlite::params![
                status.id as i64,
                status.lane_id,
                status.state.as_str(),
                status.command_type,
                status.attempts,
                status.submitted_at_ms.map(|t| t as i64),
                status.started_at_ms.map(|t| t as i64),
                status.finished_at_ms.map(|t| t as i64),
                status.result.as_ref().map(|r| r.to_string()),
                record.keep_last as i64,
                record.expires_at_ms as i64,
                i as i64 + 1,
            ],
        )
        .unwrap();
    }
}

/// Command `id` finished and kept by its lane, as a version 3 store below holds it
/// (fixed times; it expires in 2030).
fn v3_finished(id: u64) -> StoredFinished {
    let mut record = finished(id);
    record.status.finished_at_ms = Some(1_700_000_000_200 + id);
    record.expires_at_ms = 1_900_000_000_000;
    record
}

/// The records a version 3 store below keeps: commands 7 and 8, completed.
fn v3_records() -> Vec<StoredFinished> {
    vec![v3_finished(7), v3_finished(8)]
}

/// A version 3 store in `dir`, closed cleanly: version 2's commands 1..=6 and dead
/// letter, the records of commands 7 and 8, id high-water mark 10. Created as version 3
/// created its stores (rollback journal, then switched to WAL by its first open).
fn v3_store(dir: &Path) -> Connection {
    std::fs::create_dir_all(dir).unwrap();
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "user_version", 3).unwrap();
    conn.execute_batch(&format!("BEGIN; {V2_SCHEMA} {V3_FINISHED} COMMIT;"))
        .unwrap();
    insert_v2(&conn, 1..=6);
    insert_v3_finished(&conn, &v3_records());
    conn.execute(
        "INSERT INTO dead_letters \
         (command_id, command_type, lane_id, error, attempts, failed_at, payload) \
         VALUES (9, 'job', 'work', 'boom', 3, 1700000000099, '{\"n\":9}')",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'max_command_id'",
        [V1_MAX_ID as i64],
    )
    .unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn
}

/// A schedule of lane `work` put at `now`, firing every minute.
fn minutely(name: &str, now: u64) -> ScheduleInfo {
    let schedule = Schedule::every(
        name,
        "work",
        "job",
        json!({ "schedule": name }),
        Duration::from_secs(60),
    );
    ScheduleInfo::new(schedule, now).unwrap()
}

#[tokio::test]
async fn a_version_3_store_opens_keeps_its_commands_and_records_and_is_migrated_to_keep_schedules()
{
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    drop(v3_store(&dir));
    assert_eq!(header_version(&dir), 3);
    let v2: Vec<StoredCommand> = (1..=6).map(v2_command).collect();

    let store = LocalStorage::new(&dir)
        .await
        .expect("a version 3 store opens");
    assert_eq!(store.load_commands().await.unwrap(), v2);
    assert_eq!(store.load_finished().await.unwrap(), v3_records());
    assert_eq!(store.load_schedules().await.unwrap(), []);
    assert_eq!(store.max_command_id().await.unwrap(), V1_MAX_ID);
    // The new table is there at once: a schedule is put, and fires its first instant.
    let now = now_ms();
    let put = minutely("tick", now);
    store.save_schedule(put.clone()).await.unwrap();
    let instant = put.next_fire_at_ms.unwrap();
    let mut fired = put.clone();
    fired.next_fire_at_ms = Some(instant + 60_000);
    fired.last_fired_at_ms = Some(instant);
    fired.last_command_id = Some(11);
    fired.fired = 1;
    let command = StoredCommand {
        id: 11,
        payload: json!({ "schedule": "tick" }),
        ..v1_command(11)
    };
    store
        .apply(vec![StorageOp::FireSchedule {
            command: command.clone(),
            schedule: Box::new(fired.clone()),
        }])
        .await
        .unwrap();
    store.close().await.unwrap();

    assert_eq!(header_version(&dir), 6, "the migration reached lane.db");
    assert_version_6(&dir).await;
    let mut all = v2;
    all.push(command);
    expect_store(&dir, &all).await;
    let store = LocalStorage::new(&dir).await.unwrap();
    assert_eq!(store.load_finished().await.unwrap(), v3_records());
    assert_eq!(store.load_schedules().await.unwrap(), [fired]);
    assert_eq!(store.max_command_id().await.unwrap(), 11);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_version_3_crash_image_is_migrated_with_what_its_wal_holds() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v3_store(&live);
    // Commits of the dying process, only in its WAL: two commands, one more record.
    insert_v2(&conn, 11..=12);
    let more = v3_finished(13);
    conn.execute(
        "INSERT INTO finished (id, lane_id, state, command_type, attempts, submitted_at, \
         started_at, finished_at, result, error, keep_last, expires_at, seq, lane_seq) \
         VALUES (13, 'work', 'completed', 'job', 1, ?1, ?2, ?3, ?4, NULL, 100, ?5, 3, 3)",
        rusqlite::params![
            more.status.submitted_at_ms.unwrap() as i64,
            more.status.started_at_ms.unwrap() as i64,
            more.status.finished_at_ms.unwrap() as i64,
            more.status.result.as_ref().unwrap().to_string(),
            more.expires_at_ms as i64,
        ],
    )
    .unwrap();
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    assert_eq!(header_version(&dir), 3);
    assert!(std::fs::metadata(dir.join("lane.db-wal")).unwrap().len() > 0);

    let expected: Vec<StoredCommand> = (1..=6).chain(11..=12).map(v2_command).collect();
    expect_store(&dir, &expected).await;
    assert_version_6(&dir).await;
    let store = LocalStorage::new(&dir).await.unwrap();
    let mut records = v3_records();
    records.push(more);
    assert_eq!(store.load_finished().await.unwrap(), records);
    assert_eq!(store.load_schedules().await.unwrap(), []);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_version_3_store_is_refused_unmigrated_and_salvaged_into_version_6() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v3_store(&live);
    insert_v2(&conn, 11..=12);
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    // A WAL whose header is overwritten: SQLite would open the store without its
    // commits (and migrating it would write over them).
    let wal = dir.join("lane.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[..32].fill(0xa5);
    std::fs::write(&wal, bytes).unwrap();
    let before = snapshot(&dir);

    match LocalStorage::new(&dir).await {
        Err(LaneError::Storage(message)) => {
            assert!(message.contains("not a WAL header"), "{message}");
        }
        other => panic!("a damaged version 3 store must be refused: {other:?}"),
    }
    assert_eq!(snapshot(&dir), before, "the refused store was changed");
    assert_eq!(header_version(&dir), 3);

    // A damaged lane.db header instead: salvage reads version 3 (no schedules table)
    // and writes version 6 with every command and record.
    let dir = base.path().join("header");
    drop(v3_store(&dir));
    let db = dir.join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, bytes).unwrap();
    let before = snapshot(&dir);
    assert!(LocalStorage::new(&dir).await.is_err());
    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!(snapshot(&dir), before, "salvage changed the damaged store");
    assert_eq!(
        (
            report.commands,
            report.dead_letters,
            report.finished,
            report.schedules
        ),
        (6, 1, 2, 0),
        "{report:#?}"
    );
    assert!(report.unreadable.is_empty(), "{report:#?}");
    assert_version_6(&salvaged).await;
    let expected: Vec<StoredCommand> = (1..=6).map(v2_command).collect();
    expect_store(&salvaged, &expected).await;
    let store = LocalStorage::new(&salvaged).await.unwrap();
    assert_eq!(store.load_finished().await.unwrap(), v3_records());
    store.close().await.unwrap();
}

/// When the version 4 stores below put their schedule (ms since the Unix epoch).
const V4_PUT_AT: u64 = 1_700_000_000_000;

/// Stores `schedules` in a version 4 store's `schedules` table as version 4 stored them
/// (the [`ScheduleInfo`]'s JSON, by name).
fn insert_v4_schedules(conn: &Connection, schedules: &[ScheduleInfo]) {
    for info in schedules {
        conn.execute(
            "INSERT INTO schedules (name, info) VALUES (?1, ?2)",
            rusqlite::params![info.schedule.name, serde_json::to_string(info).unwrap()],
        )
        .unwrap();
    }
}

/// The schedule a version 4 store below keeps: `tick`, every minute, put at
/// [`V4_PUT_AT`].
fn v4_schedules() -> Vec<ScheduleInfo> {
    vec![minutely("tick", V4_PUT_AT)]
}

/// A version 4 store in `dir`, closed cleanly: version 3's commands 1..=6, dead letter
/// and records of commands 7 and 8, the schedule `tick`, id high-water mark 10. Created
/// as version 4 created its stores (rollback journal, then switched to WAL by its first
/// open).
fn v4_store(dir: &Path) -> Connection {
    std::fs::create_dir_all(dir).unwrap();
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "user_version", 4).unwrap();
    conn.execute_batch(&format!(
        "BEGIN; {V2_SCHEMA} {V3_FINISHED} {V4_SCHEDULES} COMMIT;"
    ))
    .unwrap();
    insert_v2(&conn, 1..=6);
    insert_v3_finished(&conn, &v3_records());
    insert_v4_schedules(&conn, &v4_schedules());
    conn.execute(
        "INSERT INTO dead_letters \
         (command_id, command_type, lane_id, error, attempts, failed_at, payload) \
         VALUES (9, 'job', 'work', 'boom', 3, 1700000000099, '{\"n\":9}')",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'max_command_id'",
        [V1_MAX_ID as i64],
    )
    .unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn
}

/// Command `id` submitted in group `group` of its lane, as version 5 stores it.
fn grouped(id: u64, group: &str) -> StoredCommand {
    StoredCommand {
        group: Some(group.into()),
        ..v2_command(id)
    }
}

/// Checks that every command of `commands` is in no group (a store older than version
/// 5 had none), so that comparing them with what a store loads checks the groups too.
fn no_groups(commands: &[StoredCommand]) {
    assert!(commands.iter().all(|c| c.group.is_none()), "{commands:?}");
}

#[tokio::test]
async fn a_version_4_store_opens_keeps_its_commands_records_and_schedules_and_is_migrated_to_keep_groups()
 {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    drop(v4_store(&dir));
    assert_eq!(header_version(&dir), 4);
    let v2: Vec<StoredCommand> = (1..=6).map(v2_command).collect();
    no_groups(&v2);

    let store = LocalStorage::new(&dir)
        .await
        .expect("a version 4 store opens");
    assert_eq!(store.load_commands().await.unwrap(), v2, "in no group");
    assert_eq!(store.load_finished().await.unwrap(), v3_records());
    assert_eq!(store.load_schedules().await.unwrap(), v4_schedules());
    assert_eq!(store.max_command_id().await.unwrap(), V1_MAX_ID);
    // The new column is there at once: a command of a group is stored with its group.
    store.save_command(grouped(11, "tenant-1")).await.unwrap();
    store
        .apply(vec![StorageOp::SaveCommand(grouped(12, "tenant-2"))])
        .await
        .unwrap();
    store.close().await.unwrap();

    assert_eq!(header_version(&dir), 6, "the migration reached lane.db");
    assert_version_6(&dir).await;
    let mut all = v2;
    all.push(grouped(11, "tenant-1"));
    all.push(grouped(12, "tenant-2"));
    expect_store(&dir, &all).await;
    let store = LocalStorage::new(&dir).await.unwrap();
    assert_eq!(store.load_finished().await.unwrap(), v3_records());
    assert_eq!(store.load_schedules().await.unwrap(), v4_schedules());
    assert_eq!(store.max_command_id().await.unwrap(), 12);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_version_4_crash_image_is_migrated_with_what_its_wal_holds() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v4_store(&live);
    // Commits of the dying process, only in its WAL: two commands, one more schedule.
    insert_v2(&conn, 11..=12);
    let more = minutely("tock", V4_PUT_AT + 1);
    insert_v4_schedules(&conn, std::slice::from_ref(&more));
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    assert_eq!(header_version(&dir), 4);
    assert!(std::fs::metadata(dir.join("lane.db-wal")).unwrap().len() > 0);

    let expected: Vec<StoredCommand> = (1..=6).chain(11..=12).map(v2_command).collect();
    no_groups(&expected);
    expect_store(&dir, &expected).await;
    assert_version_6(&dir).await;
    let store = LocalStorage::new(&dir).await.unwrap();
    assert_eq!(store.load_finished().await.unwrap(), v3_records());
    let mut schedules = v4_schedules();
    schedules.push(more);
    assert_eq!(store.load_schedules().await.unwrap(), schedules);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_version_4_store_is_refused_unmigrated_and_salvaged_into_version_6() {
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let conn = v4_store(&live);
    insert_v2(&conn, 11..=12);
    let dir = base.path().join("crashed");
    crash_image(&live, &dir);
    drop(conn);
    // A WAL whose header is overwritten: SQLite would open the store without its
    // commits (and migrating it would write over them).
    let wal = dir.join("lane.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[..32].fill(0xa5);
    std::fs::write(&wal, bytes).unwrap();
    let before = snapshot(&dir);

    match LocalStorage::new(&dir).await {
        Err(LaneError::Storage(message)) => {
            assert!(message.contains("not a WAL header"), "{message}");
        }
        other => panic!("a damaged version 4 store must be refused: {other:?}"),
    }
    assert_eq!(snapshot(&dir), before, "the refused store was changed");
    assert_eq!(header_version(&dir), 4);

    // A damaged lane.db header instead: salvage reads version 4 (no group column) and
    // writes version 6 with every command (in no group), record and schedule.
    let dir = base.path().join("header");
    drop(v4_store(&dir));
    let db = dir.join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, bytes).unwrap();
    let before = snapshot(&dir);
    assert!(LocalStorage::new(&dir).await.is_err());
    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!(snapshot(&dir), before, "salvage changed the damaged store");
    assert_eq!(
        (
            report.commands,
            report.dead_letters,
            report.finished,
            report.schedules
        ),
        (6, 1, 2, 1),
        "{report:#?}"
    );
    assert!(report.unreadable.is_empty(), "{report:#?}");
    assert_version_6(&salvaged).await;
    let expected: Vec<StoredCommand> = (1..=6).map(v2_command).collect();
    no_groups(&expected);
    expect_store(&salvaged, &expected).await;
    let store = LocalStorage::new(&salvaged).await.unwrap();
    assert_eq!(store.load_finished().await.unwrap(), v3_records());
    assert_eq!(store.load_schedules().await.unwrap(), v4_schedules());
    store.close().await.unwrap();
}

/// A version 5 store in `dir`, closed cleanly: version 4's store with the `group_key`
/// column version 5 added, its commands 1..=6 in no group and command 11 in group
/// `tenant-1`.
fn v5_store(dir: &Path) -> Connection {
    let conn = v4_store(dir);
    conn.execute_batch("ALTER TABLE commands ADD COLUMN group_key TEXT;")
        .unwrap();
    insert_v2(&conn, [11]);
    conn.execute(
        "UPDATE commands SET group_key = 'tenant-1' WHERE id = 11",
        [],
    )
    .unwrap();
    conn.pragma_update(None, "user_version", 5).unwrap();
    conn
}

/// What a version 5 store below holds, as it loads: every command replayable.
fn v5_commands() -> Vec<StoredCommand> {
    let mut commands: Vec<StoredCommand> = (1..=6).map(v2_command).collect();
    commands.push(grouped(11, "tenant-1"));
    assert!(commands.iter().all(|c| c.replayable), "{commands:?}");
    commands
}

/// Command `id` submitted as a `Box<dyn Command>` without a replay payload, as version 6
/// stores it.
fn not_replayable(id: u64) -> StoredCommand {
    StoredCommand {
        command_type: "opaque".into(),
        payload: serde_json::Value::Null,
        replayable: false,
        ..v1_command(id)
    }
}

#[tokio::test]
async fn a_version_5_store_opens_keeps_its_commands_and_is_migrated_to_keep_commands_that_cannot_be_replayed()
 {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    drop(v5_store(&dir));
    assert_eq!(header_version(&dir), 5);

    let store = LocalStorage::new(&dir)
        .await
        .expect("a version 5 store opens");
    assert_eq!(
        store.load_commands().await.unwrap(),
        v5_commands(),
        "every command of a version 5 store is replayable"
    );
    assert_eq!(store.load_finished().await.unwrap(), v3_records());
    assert_eq!(store.load_schedules().await.unwrap(), v4_schedules());
    // The new column is there at once: a command that cannot be replayed is stored as
    // such, by both write paths.
    store.save_command(not_replayable(12)).await.unwrap();
    store
        .apply(vec![StorageOp::SaveCommand(not_replayable(13))])
        .await
        .unwrap();
    store.close().await.unwrap();

    assert_eq!(header_version(&dir), 6, "the migration reached lane.db");
    assert_version_6(&dir).await;
    let mut all = v5_commands();
    all.push(not_replayable(12));
    all.push(not_replayable(13));
    expect_store(&dir, &all).await;

    // Salvage reads version 5 (no replayable column: every command replayable) and
    // version 6 (the column as stored), and writes version 6.
    for (name, build) in [("v5", true), ("v6", false)] {
        let damaged = base.path().join(format!("damaged-{name}"));
        let expected = if build {
            drop(v5_store(&damaged));
            v5_commands()
        } else {
            std::fs::create_dir_all(&damaged).unwrap();
            for (name, bytes) in snapshot(&dir) {
                std::fs::write(damaged.join(name), bytes).unwrap();
            }
            all.clone()
        };
        let db = damaged.join("lane.db");
        let mut bytes = std::fs::read(&db).unwrap();
        bytes[..16].copy_from_slice(b"not a database!!");
        std::fs::write(&db, bytes).unwrap();
        let salvaged = base.path().join(format!("salvaged-{name}"));
        let report = LocalStorage::salvage(&damaged, &salvaged).await.unwrap();
        assert!(report.unreadable.is_empty(), "{report:#?}");
        assert_eq!(report.commands, expected.len(), "{report:#?}");
        assert_version_6(&salvaged).await;
        expect_store(&salvaged, &expected).await;
    }
}

#[tokio::test]
async fn an_older_store_is_refused_untouched_when_migration_is_turned_off() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    drop(v5_store(&dir));
    let before = std::fs::read(dir.join(a3s_lane::LOCAL_STORAGE_FILE)).unwrap();
    let error = LocalStorage::open(
        &dir,
        a3s_lane::LocalStorageConfig::new()
            .must_exist()
            .with_migration(false),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("written by an older a3s-lane (schema version 5")
            && error.contains("left untouched"),
        "{error}"
    );
    assert_eq!(header_version(&dir), 5);
    assert_eq!(
        std::fs::read(dir.join(a3s_lane::LOCAL_STORAGE_FILE)).unwrap(),
        before,
        "not a byte changed"
    );
    // With migration (the default) it opens, as before.
    let store = LocalStorage::new(&dir).await.unwrap();
    store.close().await.unwrap();
    assert_eq!(header_version(&dir), 6);
}
