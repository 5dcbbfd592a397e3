//! A store that cannot be trusted is an error at open (or at submit, for a full disk),
//! never an empty queue that hides the commands it held.

use a3s_lane::{LaneConfig, LaneError, LocalStorage, LocalStorageConfig, Storage, handler_fn};
use serde_json::json;

use crate::support::{one_lane, storage};

fn storage_error(result: a3s_lane::Result<LocalStorage>) -> String {
    match result {
        Err(LaneError::Storage(message)) => message,
        Err(other) => panic!("expected a storage error, got {other:?}"),
        Ok(store) => panic!("expected an error, but {store:?} opened"),
    }
}

/// A store holding `n` commands, closed so that everything is in `lane.db`.
async fn store_with_commands(dir: &std::path::Path, n: u64) {
    let store = LocalStorage::new(dir).await.unwrap();
    let ops = (1..=n)
        .map(|id| {
            a3s_lane::StorageOp::SaveCommand(a3s_lane::StoredCommand {
                id,
                lane_id: "work".into(),
                command_type: "job".into(),
                payload: json!({ "n": id, "padding": "x".repeat(200) }),
                attempts: 0,
                created_at: 0,
                not_before: None,
                start_by: None,
                key: None,
                group: None,
                replayable: true,
            })
        })
        .collect();
    store.apply(ops).await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lane.db"), "not a database ".repeat(500)).unwrap();
    let message = storage_error(LocalStorage::new(dir.path()).await);
    assert!(message.contains("damaged"), "{message}");
    assert!(message.contains("restore it from a backup"), "{message}");
}

#[tokio::test]
async fn a_truncated_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    store_with_commands(dir.path(), 2_000).await;
    let db = dir.path().join("lane.db");
    let len = std::fs::metadata(&db).unwrap().len();
    assert!(
        len > 100_000,
        "the store should span many pages, it has {len} bytes"
    );
    // Cut on a page boundary: a torn write that lost the second half of the file.
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(len / 2 / 4096 * 4096).unwrap();
    drop(file);
    let message = storage_error(LocalStorage::new(dir.path()).await);
    assert!(message.contains("damaged"), "{message}");
}

#[tokio::test]
async fn a_page_overwritten_with_garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    store_with_commands(dir.path(), 2_000).await;
    let db = dir.path().join("lane.db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Scribble over the third page (a b-tree page of the commands table).
    for byte in &mut bytes[2 * 4096..2 * 4096 + 200] {
        *byte = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let message = storage_error(LocalStorage::new(dir.path()).await);
    assert!(message.contains("damaged"), "{message}");
}

#[tokio::test]
async fn a_sqlite_file_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("lane.db")).unwrap();
    conn.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada');")
        .unwrap();
    drop(conn);
    let message = storage_error(LocalStorage::new(dir.path()).await);
    assert!(message.contains("is not an a3s-lane store"), "{message}");
}

#[tokio::test]
async fn a_wal_without_its_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lane.db-wal"), [1u8; 4096]).unwrap();
    let message = storage_error(LocalStorage::new(dir.path()).await);
    assert!(message.contains("without"), "{message}");
    assert!(
        !dir.path().join("lane.db").exists(),
        "nothing may be created over it"
    );
}

#[tokio::test]
async fn a_missing_parent_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no").join("such").join("queue");
    let message = storage_error(LocalStorage::new(&path).await);
    assert!(message.contains("does not exist"), "{message}");
    assert!(!dir.path().join("no").exists());
}

#[tokio::test]
async fn a_missing_last_directory_is_created_unless_the_store_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue_data");
    let message =
        storage_error(LocalStorage::open(&path, LocalStorageConfig::new().must_exist()).await);
    assert!(message.contains("does not exist"), "{message}");
    std::fs::create_dir(&path).unwrap();
    let message =
        storage_error(LocalStorage::open(&path, LocalStorageConfig::new().must_exist()).await);
    assert!(message.contains("lane.db is missing"), "{message}");
    std::fs::remove_dir(&path).unwrap();
    let store = LocalStorage::new(&path).await.unwrap();
    assert!(store.was_created());
    assert_eq!(store.path(), path.canonicalize().unwrap().join("lane.db"));
}

#[tokio::test]
async fn a_path_to_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("queue.db");
    std::fs::write(&file, "").unwrap();
    let message = storage_error(LocalStorage::new(&file).await);
    assert!(message.contains("takes a directory"), "{message}");
}

#[tokio::test]
async fn a_store_open_in_this_process_is_refused_until_it_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalStorage::new(dir.path()).await.unwrap();
    let config = LocalStorageConfig::new().with_open_wait(std::time::Duration::from_millis(50));
    let message = storage_error(LocalStorage::open(dir.path(), config.clone()).await);
    assert!(
        message.contains("already open in this process"),
        "{message}"
    );
    let clone = first.clone();
    let message = first.close().await.unwrap_err().to_string();
    assert!(
        message.contains("still used by 1 other handle"),
        "{message}"
    );
    clone.close().await.unwrap();
    LocalStorage::open(dir.path(), config).await.unwrap();
}

#[tokio::test]
async fn an_invalid_max_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = LocalStorage::open(dir.path(), LocalStorageConfig::new().with_max_size(1000))
        .await
        .unwrap_err();
    assert!(matches!(error, LaneError::ConfigError(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_fails_the_submit_and_keeps_what_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        LocalStorage::open(
            dir.path(),
            LocalStorageConfig::new().with_max_size(LocalStorageConfig::MIN_MAX_SIZE),
        )
        .await
        .unwrap(),
    );
    let manager = one_lane(LaneConfig::new(1, 1))
        .with_storage(store.clone())
        .with_handler("job", handler_fn(|p, _| async move { Ok(p) }))
        .build()
        .await
        .unwrap();
    manager.pause_lane("work").unwrap();
    manager.start().await.unwrap();
    let mut accepted = 0;
    let error = loop {
        match manager
            .submit_replayable(
                "work",
                "job",
                json!({ "n": accepted, "blob": "y".repeat(2000) }),
            )
            .await
        {
            Ok(_handle) => accepted += 1,
            Err(error) => break error,
        }
        assert!(
            accepted < 1000,
            "a 64 KiB store cannot hold 1000 commands of 2 KB"
        );
    };
    let message = error.to_string();
    assert!(matches!(error, LaneError::Storage(_)), "{error:?}");
    assert!(message.contains("full"), "{message}");
    // The refused command is not queued; every accepted one is stored.
    assert_eq!(manager.stats().await.total_pending, accepted);
    assert_eq!(store.load_commands().await.unwrap().len(), accepted);
    assert!(accepted > 0);
}

#[tokio::test]
async fn an_intact_store_opens_with_its_commands() {
    let dir = tempfile::tempdir().unwrap();
    store_with_commands(dir.path(), 300).await;
    let store = storage(dir.path()).await;
    assert_eq!(store.load_commands().await.unwrap().len(), 300);
}
