//! [`LocalStorage`]: the embedded durable store — one SQLite database in WAL mode.
//!
//! # Where it lives
//! `LocalStorage::new(dir)` takes a **directory** and keeps `lane.db` (plus SQLite's
//! `lane.db-wal`) inside it. A missing directory is created if its parent exists; a
//! missing parent is an error (a typo in a path must not silently start an empty queue
//! somewhere else). Use [`LocalStorageConfig::must_exist`] to refuse to create anything.
//!
//! # Durability
//! A replayable command is in the store before `submit_replayable` returns. Writes go
//! through one writer thread; the queue's journal hands it batches, and the thread merges
//! whatever else is waiting, so many concurrent submits share one commit and one fsync
//! (group commit).
//! - [`LocalSyncMode::Full`] (the default): SQLite `synchronous=FULL` in WAL mode — the WAL
//!   is fsynced at every commit; an acknowledged submit survives a process crash, an OS
//!   crash and a power cut (as far as the disk honours fsync).
//! - [`LocalSyncMode::Normal`]: `synchronous=NORMAL` — no fsync per commit (only at
//!   checkpoints); an acknowledged submit survives a process crash (`kill -9`, a panic)
//!   but the last commits may be lost on an OS crash or power cut. Faster on slow disks.
//!
//! # Delivery guarantee
//! At least once. A command is removed from the store after it finishes (completed,
//! failed, cancelled, expired or dead-lettered), in the next group commit. A command that
//! was running when the process died — or that had finished but whose removal was not yet
//! committed — runs again on the next start. Commands whose removal was committed never
//! run again. Handlers should therefore be idempotent.
//!
//! # Finished commands
//! When a finished command's lane keeps finished commands (its `Retention`), the same
//! commit that removes the command stores its record (state, times, attempts, result or
//! error) in the table `finished`, and drops the records of that lane and state beyond
//! the newest `keep_last` and every record that expired; both are index ranges, so a
//! commit costs the same however many records are kept. A restarted queue loads the
//! records that have not expired ([`LocalStorage::load_finished`]), so lookups and
//! listings survive a restart and a crash, and new ids never reuse a kept record's.
//!
//! # Recurring schedules
//! Each schedule a queue is given (`put_schedule`) is a row of the table `schedules`:
//! its name and its `ScheduleInfo` as JSON (the schedule, whether it is paused, its next
//! and last instants, its counts). An instant fired stores its command and the schedule
//! moved past the instant in one transaction (`StorageOp::FireSchedule`), so a crash
//! neither fires an instant twice nor loses one: after a restart the schedule carries on
//! from what the store holds ([`LocalStorage::load_schedules`]). A schedule row that
//! cannot be read back is damage: loading fails naming it (a queue must not start
//! without a schedule it was given), and [`LocalStorage::salvage`] copies the readable
//! ones.
//!
//! # Damage and errors
//! Opening never changes a file it then refuses, and never opens a store it cannot fully
//! read as an empty queue. Before SQLite may write anything, it checks:
//! - `lane.db`'s header, read from the file before SQLite sees it: too short, not SQLite,
//!   an impossible page size or format, or a size that is not a whole number of pages is
//!   damage; another program's SQLite database (a different `application_id`) is refused
//!   as it is (no journal-mode switch, no `-wal`/`-shm` created); a schema version this
//!   a3s-lane does not read (a newer one) is refused.
//! - the exclusive lock: a second queue on the same store (another process, or another
//!   `LocalStorage` of this one) fails at once with "locked" / "already open".
//! - `lane.db-wal`, read once the lock is held: a header that is not a WAL's (magic,
//!   format, page size, checksum) is damage; so is a frame that fails its checksum when
//!   complete commits follow it, since SQLite would silently drop them all. Every page
//!   the store needs must be in `lane.db` or the WAL (a truncated file is damage).
//! - SQLite's `quick_check` (see [`LocalStorageConfig::with_integrity_check`]).
//!
//! A refused open closes SQLite without its checkpoint, so the WAL is neither folded into
//! `lane.db` nor deleted, and removes a side file SQLite created empty for it. The error
//! says what is damaged and what to do: restore the directory from a backup, or copy
//! every readable command into a new store with [`LocalStorage::salvage`] (which only
//! reads the damaged files). Other cases:
//! - A WAL without `lane.db` (or a leftover `lane.db-shm`/`-journal` without it) is
//!   refused; nothing is created over it.
//! - A zero-byte `lane.db` is what a crash during creation leaves (a3s-lane creates the
//!   store under a temporary name and renames it, but another tool may not): when no
//!   `-wal`/`-shm`/`-journal` is beside it, it held no command and a new store is created
//!   in its place (unless [`LocalStorageConfig::must_exist`]); with one beside it, it is
//!   refused.
//! - A torn WAL tail — the unfinished last commit of a process that died — is dropped by
//!   SQLite by design: that commit was never acknowledged. It is not damage.
//! - A command whose stored payload cannot be read back (nested deeper than the 128
//!   levels serde_json reads, as an older version could write; anything `lane-core`
//!   accepts reads back) does not stop the store: it is moved to the dead letters, with
//!   the reason and its text kept, and every other command is recovered.
//! - A directory or file this process may not write is reported as a permission problem
//!   ("not writable by this process"), distinct from a disk I/O error.
//! - A full disk (or the configured [`LocalStorageConfig::with_max_size`]) is an error at
//!   submit.
//!
//! Damage inside a row's bytes that leaves SQLite's structures valid is not detectable
//! by these checks; a payload that no longer parses then becomes a dead letter as above.
//!
//! # Reading a store another process owns
//! [`LocalStorage::read_snapshot`] reads a store without opening it: it copies
//! `lane.db` and `lane.db-wal` into a temporary directory and reads the copy, so it works
//! while a queue holds the store's lock and never changes its files (the `a3s-lane`
//! command-line tool reads `--storage DIR` this way).
//!
//! # Schema versions
//! The store's schema version is its SQLite `user_version`. Version 6 keeps commands
//! that cannot be replayed (a `Box<dyn Command>` without a replay payload: the column
//! `replayable` of `commands`), which version 5 (a3s-lane before it recorded them) did
//! not; version 5 keeps each
//! command's group inside its lane (the column `group_key`), which version 4 (a3s-lane
//! before groups) did not; version 4 keeps recurring schedules (the table `schedules`),
//! which version 3 (a3s-lane before schedules) did not; version 3 keeps the records of
//! finished commands (the table `finished`), which version 2 (a3s-lane before
//! retention) did not; version 2 keeps each command's start time (a delayed command),
//! start-by deadline and idempotency key, which version 1 (a3s-lane before delayed
//! commands) did not. A version 1 to 5 store opens, and once every check above has
//! accepted it, it is migrated in place to version 6 in one transaction (its commands
//! have neither a delay nor a deadline if it was version 1; no finished command is kept
//! yet if it was older than 3; it has no schedule yet if it was older than 4; none of its
//! commands is in a group if it was older than 5; every command is replayable); a store
//! refused as damaged is never migrated. A store of a newer version is refused
//! untouched, naming its version: open it with the a3s-lane that wrote it.
//! [`LocalStorage::salvage`] reads versions 1 to 6 and writes version 6.

mod files;
mod salvage;
mod snapshot;
mod sqlite;

pub use salvage::{SalvageReport, UnreadableRows};
pub use snapshot::LocalStorageSnapshot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use lane_core::{
    CommandId, LaneError, Result, ScheduleInfo, Storage, StorageOp, StoredCommand,
    StoredDeadLetter, StoredFinished,
};
use tokio::sync::{oneshot, watch};

use sqlite::Request;

/// The file `LocalStorage` keeps inside its directory.
pub const LOCAL_STORAGE_FILE: &str = "lane.db";

/// When SQLite syncs the store to disk; see the [module docs](self) for what each survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalSyncMode {
    /// fsync at every commit (`synchronous=FULL`): survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints (`synchronous=NORMAL`): survives a process crash.
    Normal,
}

/// Options for [`LocalStorage::open`]; `Default` is what [`LocalStorage::new`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct LocalStorageConfig {
    sync: LocalSyncMode,
    max_size: Option<u64>,
    must_exist: bool,
    integrity_check: bool,
    open_wait: Duration,
    migrate: bool,
}

impl Default for LocalStorageConfig {
    fn default() -> Self {
        Self {
            sync: LocalSyncMode::Full,
            max_size: None,
            must_exist: false,
            integrity_check: true,
            open_wait: Self::DEFAULT_OPEN_WAIT,
            migrate: true,
        }
    }
}

impl LocalStorageConfig {
    /// How long [`LocalStorage::open`] waits, by default, for another `LocalStorage` of
    /// this process on the same store to close.
    pub const DEFAULT_OPEN_WAIT: Duration = Duration::from_secs(2);

    /// The smallest accepted [`LocalStorageConfig::with_max_size`].
    pub const MIN_MAX_SIZE: u64 = 64 * 1024;

    /// Default options: `Full` sync, no size limit, create the store if missing, check
    /// its integrity at open.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets when the store is synced to disk.
    pub fn with_sync(mut self, sync: LocalSyncMode) -> Self {
        self.sync = sync;
        self
    }

    /// Caps the database file at `bytes` (at least [`Self::MIN_MAX_SIZE`]); a submit that
    /// would grow it further fails with a "store is full" error, exactly as on a full disk.
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Refuses to create a store: opening a directory without `lane.db` is an error. For
    /// processes that must recover existing work and never start empty by mistake.
    pub fn must_exist(mut self) -> Self {
        self.must_exist = true;
        self
    }

    /// Whether a store of an older schema version is migrated in place when it opens
    /// (the default), or refused untouched (`false`): for a tool that must not leave a
    /// store the a3s-lane that wrote it can no longer open.
    pub fn with_migration(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Whether an older store is migrated when it opens.
    pub(crate) fn migrates(&self) -> bool {
        self.migrate
    }

    /// Whether to run SQLite's `quick_check` at open (default on; it reads every page,
    /// a few milliseconds per 10,000 stored commands).
    pub fn with_integrity_check(mut self, check: bool) -> Self {
        self.integrity_check = check;
        self
    }

    /// How long to wait for another `LocalStorage` of this process on the same store to
    /// close (a queue that was just dropped releases its storage from a background task)
    /// before failing with "already open". Another PROCESS holding the store is reported
    /// at once.
    pub fn with_open_wait(mut self, wait: Duration) -> Self {
        self.open_wait = wait;
        self
    }

    /// The sync mode.
    pub fn sync(&self) -> LocalSyncMode {
        self.sync
    }

    fn validate(&self) -> Result<()> {
        if let Some(max) = self.max_size
            && max < Self::MIN_MAX_SIZE
        {
            return Err(LaneError::ConfigError(format!(
                "LocalStorageConfig::with_max_size({max}) is below the minimum of {} bytes",
                Self::MIN_MAX_SIZE
            )));
        }
        Ok(())
    }
}

/// The embedded durable store: SQLite in WAL mode, written by one dedicated thread with
/// group commit. See the [module docs](self) for the file layout, the durability modes and
/// the delivery guarantee.
///
/// ```no_run
/// use a3s_lane::{EventEmitter, LaneConfig, LocalStorage, QueueManagerBuilder, Storage, handler_fn};
/// use std::sync::Arc;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let storage = Arc::new(LocalStorage::new("./queue_data").await?);
/// let manager = QueueManagerBuilder::new(EventEmitter::new(100))
///     .with_storage(storage.clone())
///     .with_dlq(1000)
///     .with_lane("api", LaneConfig::new(1, 5), 0)
///     .with_handler("send_email", handler_fn(|payload, _ctx| async move { Ok(payload) }))
///     .build()
///     .await?;
/// // Unfinished commands of the last run go back to their lanes here.
/// manager.start().await?;
/// // Durable before this returns.
/// let handle = manager
///     .submit_replayable("api", "send_email", serde_json::json!({ "to": "a@example.com" }))
///     .await?;
/// handle.await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalStorage {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Request>,
    db: PathBuf,
    created: bool,
    closed: watch::Receiver<bool>,
}

impl std::fmt::Debug for LocalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStorage")
            .field("path", &self.inner.db)
            .field("created", &self.inner.created)
            .finish()
    }
}

/// Stores open in this process: a second `LocalStorage` for a live store is refused, and
/// one for a store whose last user is closing waits until it has closed.
struct Registration {
    generation: u64,
    closed: watch::Receiver<bool>,
}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(0);

fn registry() -> &'static Mutex<HashMap<PathBuf, Registration>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Registration>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl LocalStorage {
    /// Opens (or creates) the store in directory `dir` with default options.
    pub async fn new(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open(dir, LocalStorageConfig::default()).await
    }

    /// Opens (or creates, unless [`LocalStorageConfig::must_exist`]) the store in
    /// directory `dir`.
    pub async fn open(dir: impl AsRef<Path>, config: LocalStorageConfig) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // Filesystem checks and SQLite's open are blocking: keep them off the runtime.
        let (db, created) = {
            let dir = dir.clone();
            let config = config.clone();
            tokio::task::spawn_blocking(move || prepare(&dir, &config))
                .await
                .map_err(|e| LaneError::Storage(format!("opening the store panicked: {e}")))??
        };
        // Another instance of this process may be open on the same store, or still
        // closing (a dropped queue releases its storage from a background task): wait
        // for it to close, up to `open_wait`.
        let closing = registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&db)
            .map(|r| r.closed.clone());
        if let Some(mut closed) = closing {
            let wait = closed.wait_for(|c| *c);
            if tokio::time::timeout(config.open_wait, wait).await.is_err() {
                return Err(LaneError::Storage(format!(
                    "the store {} is already open in this process (still in use after \
                     waiting {:?}); share that LocalStorage (it is cheap to clone), or drop \
                     it and every queue using it first",
                    db.display(),
                    config.open_wait
                )));
            }
        }
        let conn = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || sqlite::open(&db, &config))
                .await
                .map_err(|e| LaneError::Storage(format!("opening the store panicked: {e}")))??
        };
        let (tx, rx) = mpsc::channel();
        let (closed_tx, closed_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            tx,
            db: db.clone(),
            created,
            closed: closed_rx.clone(),
        });
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        registry().lock().unwrap_or_else(|e| e.into_inner()).insert(
            db.clone(),
            Registration {
                generation,
                closed: closed_rx,
            },
        );
        let key = db.clone();
        let on_closed = move || {
            let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
            if registry
                .get(&key)
                .is_some_and(|r| r.generation == generation)
            {
                registry.remove(&key);
            }
            drop(registry);
            closed_tx.send_replace(true);
        };
        sqlite::spawn_writer(conn, db, rx, on_closed)?;
        Ok(Self { inner })
    }

    /// Closes the store and waits until its file is released (every write made before is
    /// committed first). Fails, closing nothing, while other clones of this
    /// `LocalStorage` exist (a queue built with it holds one until it is dropped).
    pub async fn close(self) -> Result<()> {
        let inner = Arc::try_unwrap(self.inner).map_err(|inner| {
            LaneError::Storage(format!(
                "the store {} is still used by {} other handle(s); drop them (and the queues \
                 built with it) first",
                inner.db.display(),
                Arc::strong_count(&inner) - 1
            ))
        })?;
        let mut closed = inner.closed.clone();
        drop(inner);
        let _ = closed.wait_for(|c| *c).await;
        Ok(())
    }

    /// The database file (`<dir>/lane.db`).
    pub fn path(&self) -> &Path {
        &self.inner.db
    }

    /// Whether this open created a new, empty store (false when an existing one was opened).
    pub fn was_created(&self) -> bool {
        self.inner.created
    }

    async fn call<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T>>) -> Request,
    ) -> Result<T> {
        let (reply, result) = oneshot::channel();
        self.inner
            .tx
            .send(request(reply))
            .map_err(|_| self.stopped())?;
        result.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> LaneError {
        LaneError::Storage(format!(
            "the storage thread of {} has stopped",
            self.inner.db.display()
        ))
    }

    async fn write(&self, ops: Vec<StorageOp>) -> Result<()> {
        self.call(|reply| Request::Write {
            ops,
            clear_all: false,
            reply,
        })
        .await
    }
}

/// Resolves `dir` to its database file, creating the directory and an empty store when
/// allowed. Returns the canonical database path and whether it was created.
fn prepare(dir: &Path, config: &LocalStorageConfig) -> Result<(PathBuf, bool)> {
    let io = |what: String, e: std::io::Error| LaneError::Storage(format!("{what}: {e}"));
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(LaneError::Storage(format!(
                "{} is a file; LocalStorage takes a directory and keeps {LOCAL_STORAGE_FILE} \
                 inside it",
                dir.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if config.must_exist {
                return Err(LaneError::Storage(format!(
                    "the store directory {} does not exist (must_exist was set, so nothing \
                     is created)",
                    dir.display()
                )));
            }
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(LaneError::Storage(format!(
                    "cannot create the store directory {}: its parent {} does not exist; \
                     create it first (or fix the path)",
                    dir.display(),
                    parent.display()
                )));
            }
            std::fs::create_dir(dir)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| files::io_error(dir, parent, "creating the store directory", &e))?;
        }
        Err(e) => {
            return Err(io(
                format!("cannot read the store directory {}", dir.display()),
                e,
            ));
        }
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| io(format!("cannot resolve {}", dir.display()), e))?;
    let db = dir.join(LOCAL_STORAGE_FILE);
    // Only metadata here: the file's bytes are read once no other LocalStorage of this
    // process holds it (closing a descriptor of it would drop that one's SQLite locks).
    let side_files: Vec<PathBuf> = files::SIDE_SUFFIXES
        .iter()
        .map(|suffix| files::side(&db, suffix))
        .filter(|path| path.exists())
        .collect();
    let names = |paths: &[PathBuf]| {
        paths
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match std::fs::metadata(&db) {
        Ok(meta) if !meta.is_file() => {
            return Err(LaneError::Storage(format!(
                "{} is not a regular file; LocalStorage keeps its database there: move it \
                 aside or choose another directory",
                db.display()
            )));
        }
        // A zero-byte lane.db is what a crash during creation by another tool (or an
        // older version) leaves: no command was ever stored in it, so it is created
        // anew — unless SQLite's side files show that it once held a store.
        Ok(meta) if meta.len() == 0 => {
            if !side_files.is_empty() {
                return Err(files::damaged(
                    &dir,
                    format!(
                        "{LOCAL_STORAGE_FILE} is empty (0 bytes) but {} exist(s) beside it: \
                         the store's data is gone from {LOCAL_STORAGE_FILE}",
                        names(&side_files)
                    ),
                ));
            }
            if config.must_exist {
                return Err(LaneError::Storage(format!(
                    "{} is empty (0 bytes) and must_exist was set, so no store is created \
                     over it",
                    db.display()
                )));
            }
        }
        Ok(_) => return Ok((db, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !side_files.is_empty() {
                return Err(files::damaged(
                    &dir,
                    format!(
                        "{} exist(s) without {LOCAL_STORAGE_FILE} (the store's recent writes \
                         are in the WAL, the rest is missing); nothing was created over it",
                        names(&side_files)
                    ),
                ));
            }
            if config.must_exist {
                return Err(LaneError::Storage(format!(
                    "no store in {} ({LOCAL_STORAGE_FILE} is missing, and must_exist was set)",
                    dir.display()
                )));
            }
        }
        Err(e) => return Err(files::io_error(&db, &dir, "reading its metadata", &e)),
    }
    // A directory this process may not write is a permission error, not "cannot open".
    tempfile::tempfile_in(&dir)
        .map_err(|e| files::io_error(&dir, &dir, "creating a file in it", &e))?;
    sqlite::create(&db)?;
    Ok((db, true))
}

/// The read side of the 0.3 API, callable without importing [`Storage`].
impl LocalStorage {
    /// Every unfinished command in the store, in submission order.
    pub async fn load_commands(&self) -> Result<Vec<StoredCommand>> {
        self.call(Request::LoadCommands).await
    }

    /// Every dead letter in the store, oldest first.
    pub async fn load_dead_letters(&self) -> Result<Vec<StoredDeadLetter>> {
        self.call(Request::LoadDeadLetters).await
    }

    /// The records of finished commands that their lanes keep and that have not
    /// expired, oldest finish first (see [`Storage::load_finished`]).
    pub async fn load_finished(&self) -> Result<Vec<StoredFinished>> {
        self.call(Request::LoadFinished).await
    }

    /// The recurring schedules in the store, by name (see [`Storage::load_schedules`]).
    /// A schedule that cannot be read back is an error that names it: the store is
    /// damaged (see [`LocalStorage::salvage`]).
    pub async fn load_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        self.call(Request::LoadSchedules).await
    }
}

#[async_trait]
impl Storage for LocalStorage {
    async fn save_command(&self, command: StoredCommand) -> Result<()> {
        self.write(vec![StorageOp::SaveCommand(command)]).await
    }

    async fn load_commands(&self) -> Result<Vec<StoredCommand>> {
        LocalStorage::load_commands(self).await
    }

    async fn remove_command(&self, id: CommandId) -> Result<()> {
        self.write(vec![StorageOp::RemoveCommand(id)]).await
    }

    async fn save_dead_letter(&self, letter: StoredDeadLetter) -> Result<()> {
        self.write(vec![StorageOp::SaveDeadLetter(letter)]).await
    }

    async fn load_dead_letters(&self) -> Result<Vec<StoredDeadLetter>> {
        LocalStorage::load_dead_letters(self).await
    }

    async fn clear_dead_letters(&self) -> Result<()> {
        self.write(vec![StorageOp::ClearDeadLetters]).await
    }

    async fn remove_dead_letter(&self, command_id: CommandId) -> Result<()> {
        self.write(vec![StorageOp::RemoveDeadLetter(command_id)])
            .await
    }

    /// Removes every command, dead letter, finished command's record and recurring
    /// schedule (the id high-water mark is kept, so ids are never reused).
    async fn clear_all(&self) -> Result<()> {
        self.call(|reply| Request::Write {
            ops: Vec::new(),
            clear_all: true,
            reply,
        })
        .await
    }

    /// Removes the command and stores its record, pruning its lane and state's records
    /// beyond `keep_last` and every expired one, in one transaction.
    async fn save_finished(&self, finished: StoredFinished) -> Result<()> {
        self.write(vec![StorageOp::SaveFinished(finished)]).await
    }

    async fn load_finished(&self) -> Result<Vec<StoredFinished>> {
        LocalStorage::load_finished(self).await
    }

    /// Stores a recurring schedule, replacing the one of its name.
    async fn save_schedule(&self, schedule: ScheduleInfo) -> Result<()> {
        self.write(vec![StorageOp::SaveSchedule(schedule)]).await
    }

    /// Removes a recurring schedule; an unknown name is not an error.
    async fn remove_schedule(&self, name: &str) -> Result<()> {
        self.write(vec![StorageOp::RemoveSchedule(name.to_owned())])
            .await
    }

    async fn load_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        LocalStorage::load_schedules(self).await
    }

    /// The whole batch in one transaction (one fsync), shared with any other write
    /// waiting. A [`StorageOp::FireSchedule`] stores the instant's command and the
    /// schedule moved past it together: a crash keeps both or neither.
    async fn apply(&self, ops: Vec<StorageOp>) -> Result<()> {
        self.write(ops).await
    }

    /// A high-water mark kept in the store (raised by every command, dead letter and
    /// finished command's record written): ids are never reused, kept records' included.
    async fn max_command_id(&self) -> Result<CommandId> {
        self.call(Request::MaxCommandId).await
    }
}
