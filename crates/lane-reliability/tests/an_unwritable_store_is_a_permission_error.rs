//! A store directory this process may not write is reported as a permission problem
//! that says what to do, not as a disk I/O error, and nothing in it is changed.
//!
//! The directory is made read-only for real: by its mode when the test runs as an
//! ordinary user; as root (which ignores file modes) by mounting a tmpfs there and
//! remounting it read-only. Where neither is possible the test fails and says why: a
//! test that cannot observe the refusal would prove nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use a3s_lane::{LaneError, LocalStorage, Storage, StorageOp, StoredCommand};
use serde_json::json;

/// Held by each test for its whole run. A child process (`mount`, `umount`) spawned by
/// one test starts with a copy of the whole process's file descriptors until it execs;
/// if another test's store file is open then, and the child is slow to exec (a loaded
/// machine), that test's `remount,ro` finds a file open for writing on its tmpfs and
/// fails with "mount point is busy". One test at a time, no such copy exists.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A directory that is read-only until dropped.
struct ReadOnly {
    dir: PathBuf,
    mounted: bool,
}

impl ReadOnly {
    /// Fills `dir` with `fill`, then makes it read-only.
    async fn new<F: Future<Output = ()>>(dir: PathBuf, fill: impl FnOnce(PathBuf) -> F) -> Self {
        std::fs::create_dir(&dir).unwrap();
        // As an ordinary user, the mode is enough; check that it really refuses.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(dir.join("probe"), b"").is_err() {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            fill(dir.clone()).await;
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            return Self {
                dir,
                mounted: false,
            };
        }
        std::fs::remove_file(dir.join("probe")).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Root: a read-only file system is the refusal root cannot override.
        mount(&["-t", "tmpfs", "-o", "size=16m", "tmpfs"], &dir);
        let guard = Self { dir, mounted: true };
        fill(guard.dir.clone()).await;
        mount(&["-o", "remount,ro"], &guard.dir);
        assert!(
            std::fs::write(guard.dir.join("probe"), b"").is_err(),
            "the remounted directory still accepts writes"
        );
        guard
    }
}

fn mount(args: &[&str], dir: &Path) {
    let output = Command::new("mount").args(args).arg(dir).output();
    match output {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "cannot make {} read-only: this test runs as root (file modes are ignored) and \
             `mount {}` failed ({other:?}); run it as an ordinary user, or where root may \
             mount a tmpfs",
            dir.display(),
            args.join(" ")
        ),
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        } else {
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
        }
    }
}

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

fn permission_error(result: a3s_lane::Result<LocalStorage>) -> String {
    let message = match result {
        Err(LaneError::Storage(message)) => message,
        other => panic!("expected a storage error, got {other:?}"),
    };
    assert!(
        message.contains("is not writable by this process"),
        "{message}"
    );
    assert!(
        message.contains("permission denied") || message.contains("read-only file system"),
        "{message}"
    );
    assert!(
        message.contains("give the user running it write access"),
        "{message}"
    );
    assert!(!message.contains("I/O error"), "{message}");
    message
}

#[tokio::test]
async fn a_read_only_store_directory_is_a_permission_error() {
    let _serial = SERIAL.lock().await;
    let base = tempfile::tempdir().unwrap();
    let ro = ReadOnly::new(base.path().join("queue"), |dir| async move {
        let store = LocalStorage::new(&dir).await.unwrap();
        let ops = (1..=20)
            .map(|id| {
                StorageOp::SaveCommand(StoredCommand {
                    id,
                    lane_id: "work".into(),
                    command_type: "job".into(),
                    payload: json!({ "n": id }),
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
    })
    .await;
    let before = snapshot(&ro.dir);
    assert!(before.contains_key("lane.db"));

    // An existing store.
    permission_error(LocalStorage::new(&ro.dir).await);
    assert_eq!(snapshot(&ro.dir), before);
    // A new store directory inside a read-only one.
    permission_error(LocalStorage::new(ro.dir.join("new")).await);
    assert_eq!(snapshot(&ro.dir), before);
}

#[tokio::test]
async fn a_read_only_empty_directory_is_a_permission_error() {
    let _serial = SERIAL.lock().await;
    let base = tempfile::tempdir().unwrap();
    let ro = ReadOnly::new(base.path().join("queue"), |_| async {}).await;
    permission_error(LocalStorage::new(&ro.dir).await);
    assert!(snapshot(&ro.dir).is_empty());
}
