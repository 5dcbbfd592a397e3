//! [`LocalStorage::read_snapshot`]: reading a store without opening it, so that a tool
//! can look at a store another process owns (and holds locked) and never changes it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lane_core::{LaneError, Result, ScheduleInfo, StoredCommand, StoredDeadLetter, StoredFinished};

use super::{LOCAL_STORAGE_FILE, LocalStorage, LocalStorageConfig, files, registry};

/// What a store held at one instant, read by [`LocalStorage::read_snapshot`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LocalStorageSnapshot {
    /// Its unfinished commands, in submission order (a store does not record which of
    /// them are running).
    pub commands: Vec<StoredCommand>,
    /// Its dead letters, oldest first.
    pub dead_letters: Vec<StoredDeadLetter>,
    /// The finished commands' records its lanes keep and that have not expired, oldest
    /// finish first.
    pub finished: Vec<StoredFinished>,
    /// Its recurring schedules, by name.
    pub schedules: Vec<ScheduleInfo>,
}

/// How many times the files are copied again when they changed during a copy.
const COPY_ATTEMPTS: usize = 5;

impl LocalStorage {
    /// Reads the store in `dir` without opening it: `lane.db` and `lane.db-wal` are
    /// copied (read, never opened by SQLite, never written) into a temporary directory,
    /// and the copy is opened and read there with every check [`LocalStorage::open`]
    /// makes. So it works while another process owns the store and holds its lock, and
    /// leaves the store's files exactly as they were (no lock, no `-shm`, no
    /// checkpoint, no migration). The copy is taken again when the files changed while
    /// they were copied; a store being written all the time is read as of one of its
    /// commits (a commit still being written is left out, as after a crash).
    ///
    /// A missing store is an error (nothing is created), and so is a store open in this
    /// process: read it through that `LocalStorage` (reading its file here would drop
    /// that connection's locks).
    pub async fn read_snapshot(dir: impl AsRef<Path>) -> Result<LocalStorageSnapshot> {
        let dir = dir.as_ref().to_path_buf();
        let (work, settled) = tokio::task::spawn_blocking(move || copy_store(&dir))
            .await
            .map_err(|e| LaneError::Storage(format!("copying the store panicked: {e}")))??;
        let storage = LocalStorage::open(work.path(), LocalStorageConfig::new().must_exist())
            .await
            .map_err(|e| {
                let hint = if settled {
                    ""
                } else {
                    " (the store changed while it was copied, every time: try again)"
                };
                LaneError::Storage(format!("the copy of the store cannot be read{hint}: {e}"))
            })?;
        let snapshot = LocalStorageSnapshot {
            commands: storage.load_commands().await?,
            dead_letters: storage.load_dead_letters().await?,
            finished: storage.load_finished().await?,
            schedules: storage.load_schedules().await?,
        };
        // Released before the temporary directory goes.
        storage.close().await?;
        drop(work);
        Ok(snapshot)
    }
}

/// The length and modification time of a file, `None` when it is missing.
fn stamp(path: &Path) -> std::io::Result<Option<(u64, SystemTime)>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some((meta.len(), meta.modified()?))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copies `from` into a new file `to`, streamed; `to` gets this process's default mode,
/// not `from`'s (a read-only store must give a copy that can be opened).
fn copy(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut source = std::fs::File::open(from)?;
    let mut target = std::fs::File::create(to)?;
    std::io::copy(&mut source, &mut target)
}

/// Copies the store's files into a temporary directory; also says whether the last copy
/// was taken while the files stood still.
fn copy_store(dir: &Path) -> Result<(tempfile::TempDir, bool)> {
    let io = |path: &Path, doing: &str, e: std::io::Error| {
        LaneError::Storage(format!("cannot read {} ({doing}): {e}", path.display()))
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| io(dir, "resolving the store directory", e))?;
    let db = dir.join(LOCAL_STORAGE_FILE);
    if !db.is_file() {
        return Err(LaneError::Storage(format!(
            "no store in {} ({LOCAL_STORAGE_FILE} is missing)",
            dir.display()
        )));
    }
    if registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&db)
    {
        return Err(LaneError::Storage(format!(
            "the store {} is open in this process: read it through that LocalStorage",
            db.display()
        )));
    }
    let wal = files::side(&db, "-wal");
    let work = tempfile::tempdir()
        .map_err(|e| LaneError::Storage(format!("cannot create a temporary directory: {e}")))?;
    let copy_db: PathBuf = work.path().join(LOCAL_STORAGE_FILE);
    let copy_wal = files::side(&copy_db, "-wal");
    let stamps = || -> Result<_> {
        Ok((
            stamp(&db).map_err(|e| io(&db, "its metadata", e))?,
            stamp(&wal).map_err(|e| io(&wal, "its metadata", e))?,
        ))
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = stamps()?;
        copy(&db, &copy_db).map_err(|e| io(&db, "copying it", e))?;
        let _ = std::fs::remove_file(&copy_wal);
        match copy(&wal, &copy_wal) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&wal, "copying it", e)),
        }
        let settled = stamps()? == before;
        if settled || attempt == COPY_ATTEMPTS {
            return Ok((work, settled));
        }
        std::thread::sleep(std::time::Duration::from_millis(20 * attempt as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lane_core::Storage;

    fn command(id: u64) -> StoredCommand {
        // From JSON: fields a later version adds take their defaults.
        serde_json::from_value(serde_json::json!({
            "id": id,
            "lane_id": "query",
            "command_type": "echo",
            "payload": { "n": id },
            "attempts": 0,
            "created_at": 1,
        }))
        .unwrap()
    }

    fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn a_snapshot_reads_a_closed_store_and_changes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path()).await.unwrap();
        storage.save_command(command(1)).await.unwrap();
        storage.save_command(command(2)).await.unwrap();
        storage.close().await.unwrap();
        let before = files_of(dir.path());

        let snapshot = LocalStorage::read_snapshot(dir.path()).await.unwrap();
        assert_eq!(snapshot.commands, vec![command(1), command(2)]);
        assert!(snapshot.dead_letters.is_empty());
        assert_eq!(
            files_of(dir.path()),
            before,
            "the store's files are untouched"
        );
    }

    #[tokio::test]
    async fn a_store_open_in_this_process_or_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = LocalStorage::read_snapshot(dir.path()).await.unwrap_err();
        assert!(missing.to_string().contains("no store"), "{missing}");
        assert!(files_of(dir.path()).is_empty(), "nothing is created");

        let storage = LocalStorage::new(dir.path()).await.unwrap();
        let open = LocalStorage::read_snapshot(dir.path()).await.unwrap_err();
        assert!(open.to_string().contains("open in this process"), "{open}");
        drop(storage);
    }
}
