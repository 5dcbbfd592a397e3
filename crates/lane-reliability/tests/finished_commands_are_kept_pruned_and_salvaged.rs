//! The records of finished commands in `LocalStorage` (`StorageOp::SaveFinished`,
//! `Storage::load_finished`): stored whole in the commit that removes the command; each
//! lane and final state keeps its newest `keep_last`; expired records are never loaded
//! and are dropped by the next write; `clear_all` forgets them but not their ids; a
//! record that cannot be read back is shown as such or left out, never stopping the
//! store; salvage copies them.

use std::path::Path;
use std::time::Duration;

use a3s_lane::{
    CommandFailure, CommandState, CommandStatus, LocalStorage, Storage, StorageOp, StoredCommand,
    StoredFinished,
};
use rusqlite::Connection;
use serde_json::{Value, json};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Command `id` of `lane`, ended in `state` now, kept by a lane that keeps `keep_last`
/// for an hour.
fn ended(id: u64, lane: &str, state: CommandState, keep_last: usize) -> StoredFinished {
    let now = now_ms();
    let mut status = CommandStatus::new(id, lane, "job", state, 1);
    status.submitted_at_ms = Some(now - 30);
    status.started_at_ms = Some(now - 20);
    status.finished_at_ms = Some(now);
    match state {
        CommandState::Completed => status.result = Some(json!({ "done": id })),
        _ => {
            status.error = Some(CommandFailure {
                kind: "failed".into(),
                message: format!("{id} broke"),
                timeout_ms: None,
            })
        }
    }
    StoredFinished {
        status,
        keep_last,
        expires_at_ms: now + 3_600_000,
    }
}

fn completed(id: u64, keep_last: usize) -> StoredFinished {
    ended(id, "jobs", CommandState::Completed, keep_last)
}

fn command(id: u64) -> StoredCommand {
    StoredCommand {
        id,
        lane_id: "jobs".into(),
        command_type: "job".into(),
        payload: json!({ "n": id }),
        attempts: 0,
        created_at: now_ms(),
        not_before: None,
        start_by: None,
        key: None,
        group: None,
        replayable: true,
    }
}

async fn save(store: &LocalStorage, records: impl IntoIterator<Item = StoredFinished>) {
    store
        .apply(records.into_iter().map(StorageOp::SaveFinished).collect())
        .await
        .unwrap();
}

/// The ids of the loaded records of `lane` in `state`, in load order.
async fn kept(store: &LocalStorage, lane: &str, state: CommandState) -> Vec<u64> {
    store
        .load_finished()
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.status.lane_id == lane && f.status.state == state)
        .map(|f| f.status.id)
        .collect()
}

/// The rows of the table `finished` of the closed store in `dir`, expired ones included.
fn rows_in_file(dir: &Path) -> i64 {
    let conn = Connection::open(dir.join("lane.db")).unwrap();
    conn.query_row("SELECT count(*) FROM finished", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_finished_record_is_stored_whole_in_the_commit_that_removes_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    for id in 1..=3 {
        store.save_command(command(id)).await.unwrap();
    }
    let done = completed(1, 10);
    let mut timed_out = ended(2, "jobs", CommandState::Failed, 10);
    timed_out.status.attempts = 3;
    timed_out.status.error = Some(CommandFailure {
        kind: "timeout".into(),
        message: "timed out after 5s".into(),
        timeout_ms: Some(5000),
    });
    let mut cancelled = ended(3, "jobs", CommandState::Cancelled, 10);
    cancelled.status.attempts = 0;
    cancelled.status.started_at_ms = None;
    // A record of a command the store never held (an id beyond every other).
    let mut elsewhere = ended(50, "other", CommandState::Expired, 10);
    elsewhere.status.submitted_at_ms = None;
    let records = vec![done, timed_out, cancelled, elsewhere];
    save(&store, records.clone()).await;

    assert_eq!(store.load_commands().await.unwrap(), []);
    assert_eq!(store.load_finished().await.unwrap(), records);
    assert_eq!(store.max_command_id().await.unwrap(), 50);
    store.close().await.unwrap();

    let store = LocalStorage::new(dir.path()).await.unwrap();
    assert_eq!(
        store.load_finished().await.unwrap(),
        records,
        "kept across a restart, oldest finish first"
    );
    assert_eq!(store.max_command_id().await.unwrap(), 50);
    store.close().await.unwrap();
}

#[tokio::test]
async fn each_lane_and_final_state_keeps_its_newest_keep_last() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    save(&store, (1..=5).map(|id| completed(id, 3))).await;
    save(
        &store,
        [6, 7].map(|id| ended(id, "jobs", CommandState::Failed, 3)),
    )
    .await;
    save(
        &store,
        [8, 9].map(|id| ended(id, "other", CommandState::Completed, 3)),
    )
    .await;
    assert_eq!(
        kept(&store, "jobs", CommandState::Completed).await,
        [3, 4, 5]
    );
    assert_eq!(kept(&store, "jobs", CommandState::Failed).await, [6, 7]);
    assert_eq!(kept(&store, "other", CommandState::Completed).await, [8, 9]);

    // One at a time, as many commits.
    for id in 10..=12 {
        save(&store, [completed(id, 3)]).await;
    }
    assert_eq!(
        kept(&store, "jobs", CommandState::Completed).await,
        [10, 11, 12]
    );
    // The lane now keeps one: the next record prunes its list to itself, and only it.
    save(&store, [completed(13, 1)]).await;
    assert_eq!(kept(&store, "jobs", CommandState::Completed).await, [13]);
    assert_eq!(kept(&store, "jobs", CommandState::Failed).await, [6, 7]);
    assert_eq!(kept(&store, "other", CommandState::Completed).await, [8, 9]);
    store.close().await.unwrap();
    assert_eq!(rows_in_file(dir.path()), 5, "the pruned rows are gone");
}

#[tokio::test]
async fn a_command_that_finishes_again_takes_one_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    save(&store, (1..=3).map(|id| completed(id, 3))).await;
    // Command 2, redriven, completes again: it is the newest, and the list still
    // holds three.
    save(&store, [completed(2, 3)]).await;
    assert_eq!(
        kept(&store, "jobs", CommandState::Completed).await,
        [1, 3, 2]
    );
    save(&store, [completed(4, 3)]).await;
    assert_eq!(
        kept(&store, "jobs", CommandState::Completed).await,
        [3, 2, 4]
    );
    // Command 3 ends again in another state: it moves there.
    save(&store, [ended(3, "jobs", CommandState::Failed, 3)]).await;
    assert_eq!(kept(&store, "jobs", CommandState::Completed).await, [2, 4]);
    assert_eq!(kept(&store, "jobs", CommandState::Failed).await, [3]);
    save(&store, [completed(5, 3)]).await;
    assert_eq!(
        kept(&store, "jobs", CommandState::Completed).await,
        [2, 4, 5]
    );
    save(&store, [completed(6, 3)]).await;
    assert_eq!(
        kept(&store, "jobs", CommandState::Completed).await,
        [4, 5, 6]
    );
    let records = store.load_finished().await.unwrap();
    assert_eq!(records.len(), 4, "one record per command: {records:?}");
    store.close().await.unwrap();
}

#[tokio::test]
async fn expired_records_are_never_loaded_and_are_dropped_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    let mut brief = completed(1, 100);
    brief.expires_at_ms = now_ms() + 300;
    let lasting = ended(2, "other", CommandState::Cancelled, 100);
    let mut already = completed(3, 100);
    already.expires_at_ms = now_ms() - 1;
    save(&store, [brief.clone(), lasting.clone(), already]).await;
    assert_eq!(
        store.load_finished().await.unwrap(),
        [brief, lasting.clone()],
        "a record expired when written is not kept"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.load_finished().await.unwrap(),
        std::slice::from_ref(&lasting)
    );
    store.close().await.unwrap();
    assert_eq!(rows_in_file(dir.path()), 2, "loading writes nothing");

    // Any later write drops it, whatever its lane.
    let store = LocalStorage::new(dir.path()).await.unwrap();
    let next = ended(4, "third", CommandState::Expired, 100);
    save(&store, [next.clone()]).await;
    assert_eq!(store.load_finished().await.unwrap(), [lasting, next]);
    store.close().await.unwrap();
    assert_eq!(rows_in_file(dir.path()), 2);
}

#[tokio::test]
async fn clear_all_forgets_the_records_but_not_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    save(&store, [completed(7, 10), completed(8, 10)]).await;
    store.clear_all().await.unwrap();
    assert_eq!(store.load_finished().await.unwrap(), []);
    assert_eq!(store.max_command_id().await.unwrap(), 8);
    store.close().await.unwrap();
    assert_eq!(rows_in_file(dir.path()), 0);
}

/// `[[ … "leaf" … ]]`, `depth` levels.
fn nested(depth: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

#[tokio::test]
async fn a_record_that_cannot_be_read_back_never_stops_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path()).await.unwrap();
    // A handler's result has no depth limit: deeper than serde_json reads back.
    let mut deep = completed(1, 10);
    deep.status.result = Some(nested(200));
    let fine = completed(2, 10);
    save(
        &store,
        [deep, fine.clone(), completed(3, 10), completed(4, 10)],
    )
    .await;
    store.close().await.unwrap();
    {
        let conn = Connection::open(dir.path().join("lane.db")).unwrap();
        conn.execute_batch(
            "UPDATE finished SET error = '{not json' WHERE id = 2;
             UPDATE finished SET state = 'bogus' WHERE id = 3;
             UPDATE finished SET attempts = 'many' WHERE id = 4;",
        )
        .unwrap();
    }

    let store = LocalStorage::new(dir.path()).await.unwrap();
    let records = store.load_finished().await.unwrap();
    let ids: Vec<u64> = records.iter().map(|f| f.status.id).collect();
    assert_eq!(ids, [1, 2], "rows of no known state or type are left out");
    let deep = &records[0].status;
    assert_eq!(deep.result, None);
    let error = deep.error.as_ref().expect("the reason is shown");
    assert_eq!(error.kind, "other");
    assert!(
        error.message.contains("result cannot be read back"),
        "{error:?}"
    );
    let broken = &records[1].status;
    assert_eq!(broken.result, fine.status.result, "the result is intact");
    assert!(
        broken
            .error
            .as_ref()
            .is_some_and(|e| e.kind == "other" && e.message.contains("error cannot be read back")),
        "{broken:?}"
    );
    // The store goes on: new records are kept as before.
    save(&store, [completed(5, 10)]).await;
    assert_eq!(
        kept(&store, "jobs", CommandState::Completed).await,
        [1, 2, 5]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn salvage_copies_the_finished_records() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    let store = LocalStorage::new(&dir).await.unwrap();
    for id in [1, 2] {
        store.save_command(command(id)).await.unwrap();
    }
    save(&store, (3..=5).map(|id| completed(id, 3))).await;
    save(&store, [ended(90, "other", CommandState::Failed, 3)]).await;
    let records = store.load_finished().await.unwrap();
    store.close().await.unwrap();
    let db = dir.join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, bytes).unwrap();
    assert!(LocalStorage::new(&dir).await.is_err());

    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert_eq!((report.commands, report.finished), (2, 4), "{report:#?}");
    assert!(report.unreadable.is_empty(), "{report:#?}");
    let store = LocalStorage::new(&salvaged).await.unwrap();
    assert_eq!(store.load_finished().await.unwrap(), records);
    assert_eq!(store.max_command_id().await.unwrap(), 90);
    // Their order came along: the next record prunes the oldest.
    save(&store, [completed(6, 3)]).await;
    assert_eq!(
        kept(&store, "jobs", CommandState::Completed).await,
        [4, 5, 6]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn salvage_skips_and_reports_finished_records_on_damaged_pages() {
    const RECORDS: u64 = 400;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    let store = LocalStorage::new(&dir).await.unwrap();
    let records: Vec<StoredFinished> = (1..=RECORDS)
        .map(|id| {
            let mut record = completed(id, 1000);
            // About four records to a page; the tag finds one of them in the file.
            record.status.result =
                Some(json!({ "tag": format!("<tag {id}>"), "pad": "x".repeat(900) }));
            record
        })
        .collect();
    save(&store, records.clone()).await;
    store.close().await.unwrap();
    // A page of the table (results are in no index) overwritten.
    let db = dir.join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"<tag 200>")
        .expect("the record is in lane.db");
    let page = at / 4096 * 4096;
    for (i, byte) in bytes[page..page + 4096].iter_mut().enumerate() {
        *byte = (i * 7 + 13) as u8;
    }
    std::fs::write(&db, bytes).unwrap();
    assert!(LocalStorage::new(&dir).await.is_err(), "refused as damaged");

    let salvaged = base.path().join("salvaged");
    let report = LocalStorage::salvage(&dir, &salvaged).await.unwrap();
    assert!(
        (1..RECORDS as usize).contains(&report.finished),
        "{report:#?}"
    );
    let lost: Vec<_> = report
        .unreadable
        .iter()
        .filter(|rows| rows.table == "finished")
        .collect();
    assert!(
        lost.iter().any(|rows| rows.ids.contains(&200)),
        "the damaged page's records are reported: {report:#?}"
    );
    let store = LocalStorage::new(&salvaged).await.unwrap();
    let copied = store.load_finished().await.unwrap();
    assert_eq!(copied.len(), report.finished);
    for record in &copied {
        assert_eq!(
            record,
            &records[record.status.id as usize - 1],
            "copied as it was"
        );
    }
    assert!(store.max_command_id().await.unwrap() >= RECORDS);
    store.close().await.unwrap();
}
