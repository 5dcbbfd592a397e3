//! The SQLite side of [`LocalStorage`](super::LocalStorage): opening and checking the
//! file, the schema, and the writer thread that owns the connection.
//!
//! Every SQLite call happens on that one thread, never on a tokio worker. Requests arrive
//! on a channel; consecutive write requests are committed in ONE transaction (one WAL
//! fsync), each inside its own savepoint so that one bad request fails alone.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use lane_core::{
    CommandFailure, CommandId, CommandState, CommandStatus, LaneError, Result, ScheduleInfo,
    StorageOp, StoredCommand, StoredDeadLetter, StoredFinished,
};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

use super::files::{self, DbHeader, HeaderProblem};
use super::{LOCAL_STORAGE_FILE, LocalStorageConfig, LocalSyncMode};

/// `PRAGMA application_id` of an a3s-lane store ("A3SL").
pub(super) const APPLICATION_ID: i32 = 0x4133_534c;
/// `PRAGMA user_version`: the schema version this code writes. Version 2 added the
/// `not_before`, `start_by` and `idempotency_key` columns of `commands` (delayed
/// commands, start-by deadlines, idempotency keys); version 3 the `finished` table (the
/// records of finished commands that their lanes keep); version 4 the `schedules` table
/// (recurring schedules); version 5 the `group_key` column of `commands` (a command's
/// group inside its lane); version 6 the `replayable` column of `commands` (0: a
/// `Box<dyn Command>` without a replay payload, recorded but not runnable again).
pub(super) const SCHEMA_VERSION: i32 = 6;
/// The oldest schema version this code opens; an older store's schema is brought up to
/// [`SCHEMA_VERSION`] once it has passed every check (see [`MIGRATIONS`]).
pub(super) const OLDEST_SCHEMA_VERSION: i32 = 1;

/// The `finished` table of schema version 3, as a new store and the migration from
/// version 2 create it: one row per finished command its lane keeps (`id` is the
/// command's id; a command that finishes again replaces its row). `state` is the
/// [`CommandState`]'s name, `result` the result's JSON, `error` the
/// [`CommandFailure`]'s; times are ms since the Unix epoch; `keep_last` and
/// `expires_at` are the lane's rule when it was stored. `seq` orders records by when
/// they were stored (one more than the largest in the table); `lane_seq` numbers the
/// records of one lane and state consecutively, oldest lowest (a replaced record's place
/// is closed up), so that the records beyond the newest `keep_last` are one index range
/// (`lane_seq <= newest - keep_last`), found without counting. (Expiry drops the oldest
/// of a list first, since a lane has one `keep_for`; should a list's records expire out
/// of order after that changed, it keeps fewer until the gap is pruned away.)
macro_rules! finished_schema {
    () => {
        "
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
"
    };
}

/// The `schedules` table of schema version 4, as a new store and the migration from
/// version 3 create it: one row per recurring schedule, by name; `info` is the
/// [`ScheduleInfo`]'s JSON (the schedule, whether it is paused, its next and last
/// instants, its counts). A schedule put again replaces its row; an instant fired
/// replaces it in the transaction that stores the instant's command.
macro_rules! schedules_schema {
    () => {
        "
CREATE TABLE schedules (
    name TEXT PRIMARY KEY NOT NULL,
    info TEXT NOT NULL
);
"
    };
}

/// The schema of a new store (version [`SCHEMA_VERSION`]).
pub(super) const SCHEMA: &str = concat!(
    "
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    lane_id TEXT NOT NULL,
    command_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    not_before INTEGER,
    start_by INTEGER,
    idempotency_key TEXT,
    group_key TEXT,
    replayable INTEGER NOT NULL DEFAULT 1
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
",
    finished_schema!(),
    schedules_schema!()
);

/// `MIGRATIONS[i]` brings a store of schema version `OLDEST_SCHEMA_VERSION + i` to the
/// next version. Each runs, with the `user_version` update, in one transaction.
const MIGRATIONS: [&str; (SCHEMA_VERSION - OLDEST_SCHEMA_VERSION) as usize] = [
    // 1 -> 2: delayed commands, start-by deadlines and idempotency keys (NULL: none, as
    // for every command of a version 1 store).
    "ALTER TABLE commands ADD COLUMN not_before INTEGER;
     ALTER TABLE commands ADD COLUMN start_by INTEGER;
     ALTER TABLE commands ADD COLUMN idempotency_key TEXT;",
    // 2 -> 3: the records of finished commands (none yet).
    finished_schema!(),
    // 3 -> 4: recurring schedules (none yet).
    schedules_schema!(),
    // 4 -> 5: groups inside a lane (NULL: no group, as for every command of an older
    // store).
    "ALTER TABLE commands ADD COLUMN group_key TEXT;",
    // 5 -> 6: commands that cannot be replayed (1: every command of an older store was
    // a replayable one).
    "ALTER TABLE commands ADD COLUMN replayable INTEGER NOT NULL DEFAULT 1;",
];

/// Whether this code opens a store of schema `version` (migrating it if it is older).
pub(super) fn readable_version(version: i32) -> bool {
    (OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&version)
}

/// The error for a store of a schema version this code does not open.
fn unknown_version(db: &Path, version: i32) -> LaneError {
    let (what, todo) = if version > SCHEMA_VERSION {
        (
            "was written by a newer a3s-lane",
            "open it with that version (or a later one); it was left untouched",
        )
    } else {
        (
            "has a schema version no a3s-lane writes",
            "it was left untouched; if it is the store, its header is damaged: restore it \
             from a backup, or use LocalStorage::salvage",
        )
    };
    LaneError::Storage(format!(
        "the store {} {what} (schema version {version}; this a3s-lane reads versions \
         {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}): {todo}",
        db.display()
    ))
}

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

pub(super) enum Request {
    Write {
        ops: Vec<StorageOp>,
        clear_all: bool,
        reply: Reply<()>,
    },
    LoadCommands(Reply<Vec<StoredCommand>>),
    LoadDeadLetters(Reply<Vec<StoredDeadLetter>>),
    LoadFinished(Reply<Vec<StoredFinished>>),
    LoadSchedules(Reply<Vec<ScheduleInfo>>),
    MaxCommandId(Reply<CommandId>),
}

/// Turns a SQLite error into an error that says what happened and what to do.
pub(super) fn describe(path: &Path, doing: &str, error: rusqlite::Error) -> LaneError {
    let path = path.display();
    let message = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "the store {path} is locked by another process or connection ({error}); only one \
             queue may use a store at a time: stop the other one or use another directory"
        ),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => format!(
            "the store {path} is damaged ({error}) while {doing}: restore it from a backup, \
             or copy every readable command into a new store with LocalStorage::salvage"
        ),
        Some(ErrorCode::DiskFull) => format!(
            "the store {path} is full while {doing} ({error}): the disk has no space left or \
             the store reached its configured max size; free space (or raise \
             LocalStorageConfig::with_max_size) and try again"
        ),
        Some(ErrorCode::CannotOpen) => format!(
            "cannot open the store {path} ({error}); check that its directory exists and is \
             readable and writable"
        ),
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => format!(
            "the store {path} is not writable by this process (permission denied: {error}): \
             give the user running it write access to the store's directory and the files in \
             it, or choose another directory"
        ),
        Some(ErrorCode::SystemIoFailure) => {
            format!("I/O error on the store {path} while {doing} ({error}); check the disk")
        }
        _ => format!("SQLite error on the store {path} while {doing}: {error}"),
    };
    LaneError::Storage(message)
}

/// Creates an empty store at `db` atomically: built under a temporary name, synced, then
/// renamed, so a crash during creation never leaves a half-made `lane.db` behind.
pub(super) fn create(db: &Path) -> Result<()> {
    create_with(db, |_| Ok(()))
}

/// [`create`], with `fill` run on the new store (in its creating transaction) before it is
/// moved into place: a salvaged store appears whole or not at all.
pub(super) fn create_with(
    db: &Path,
    fill: impl FnOnce(&Connection) -> rusqlite::Result<()>,
) -> Result<()> {
    let dir = db.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("lane.db.creating-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let build = || -> rusqlite::Result<()> {
        let conn = Connection::open_with_flags(
            &tmp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        conn.execute_batch(&format!("BEGIN; {SCHEMA}"))?;
        fill(&conn)?;
        conn.execute_batch("COMMIT;")?;
        conn.close().map_err(|(_, e)| e)
    };
    if let Err(e) = build() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(files::side(&tmp, "-journal"));
        return Err(describe(&tmp, "creating the store", e));
    }
    let io = |what: &str, e: std::io::Error| {
        files::io_error(db, dir, &format!("{what} {}", db.display()), &e)
    };
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("syncing the new store", e))?;
    std::fs::rename(&tmp, db).map_err(|e| io("moving the new store into place at", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing the directory of", e))?;
    Ok(())
}

/// Reads and checks the header bytes of `db` before SQLite opens it: a file that is not
/// an a3s-lane store of a schema version this code reads is refused untouched (SQLite
/// would switch a foreign database to WAL mode, or roll back its journal).
fn check_header(db: &Path, dir: &Path) -> Result<DbHeader> {
    let (bytes, len) = files::read_db_header(db)
        .map_err(|e| files::io_error(db, dir, "reading its header", &e))?;
    let header = match files::parse_db_header(&bytes, len) {
        Ok(header) => header,
        Err(HeaderProblem::TooShort(len)) => {
            return Err(files::damaged(
                dir,
                format!(
                    "{LOCAL_STORAGE_FILE} is {len} bytes long, shorter than a SQLite header \
                     (truncated, or not a database)"
                ),
            ));
        }
        Err(HeaderProblem::NotSqlite) => {
            return Err(files::damaged(
                dir,
                format!(
                    "{LOCAL_STORAGE_FILE} is not a SQLite database (its first bytes are not \
                     SQLite's header; if it is another program's file, point LocalStorage at \
                     a directory of its own)"
                ),
            ));
        }
        Err(HeaderProblem::Damaged(why)) => {
            return Err(files::damaged(dir, format!("{LOCAL_STORAGE_FILE}: {why}")));
        }
    };
    if header.application_id != APPLICATION_ID {
        return Err(LaneError::Storage(format!(
            "{} is not an a3s-lane store (SQLite application_id {:#x}, expected \
             {APPLICATION_ID:#x}); it was left untouched: point LocalStorage at a directory of \
             its own (if it is the store, its header is damaged: restore it from a backup, or \
             use LocalStorage::salvage)",
            db.display(),
            header.application_id
        )));
    }
    if !readable_version(header.user_version) {
        return Err(unknown_version(db, header.user_version));
    }
    Ok(header)
}

/// Opens an existing store, takes its exclusive lock, checks it and brings an older
/// schema up to [`SCHEMA_VERSION`].
///
/// Nothing is written until every check has passed: the header is read from the file
/// before SQLite sees it, the WAL once the lock keeps other processes from writing it;
/// SQLite is told not to checkpoint (fold the WAL into the file and delete it) when a
/// refused connection closes; a side file that SQLite created empty for a refused open
/// is removed again. The migration is the first write.
pub(super) fn open(db: &Path, config: &LocalStorageConfig) -> Result<Connection> {
    let dir = db.parent().unwrap_or(Path::new("."));
    let header = check_header(db, dir)?;
    files::check_writable(db, dir)?;
    let existed: Vec<bool> = files::SIDE_SUFFIXES
        .iter()
        .map(|suffix| files::side(db, suffix).exists())
        .collect();
    // No CREATE flag: a missing file is an error here, never a fresh empty queue.
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| describe(db, "opening", e))?;
    let checked = check_and_configure(&conn, db, dir, header, config).and_then(|version| {
        if version < SCHEMA_VERSION && !config.migrates() {
            return Err(LaneError::Storage(format!(
                "the store {} was written by an older a3s-lane (schema version {version}; \
                 this one writes {SCHEMA_VERSION}) and migrating it was turned off: it was \
                 left untouched. Open it with the a3s-lane that wrote it, or allow the \
                 migration (after which only this version or a later one opens it)",
                db.display()
            )));
        }
        migrate(&conn, version).map_err(|e| describe(db, "migrating", e))
    });
    match checked {
        Ok(()) => Ok(conn),
        Err(error) => {
            drop(conn);
            for (suffix, existed) in files::SIDE_SUFFIXES.iter().zip(existed) {
                let path = files::side(db, suffix);
                if !existed && std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err(error)
        }
    }
}

/// Brings a checked store of schema `version` up to [`SCHEMA_VERSION`], in one
/// transaction: a crash leaves it at `version` or migrated, never in between.
fn migrate(conn: &Connection, version: i32) -> rusqlite::Result<()> {
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for step in &MIGRATIONS[(version - OLDEST_SCHEMA_VERSION) as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Checks the opened store and configures the connection; returns its schema version
/// (as SQLite reads it, the WAL included), which [`readable_version`] accepts.
fn check_and_configure(
    conn: &Connection,
    db: &Path,
    dir: &Path,
    header: DbHeader,
    config: &LocalStorageConfig,
) -> Result<i32> {
    let err = |doing: &'static str| {
        move |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                files::damaged(dir, format!("SQLite reports '{e}' while {doing}"))
            }
            _ => describe(db, doing, e),
        }
    };
    // Until the checks pass, closing must leave the WAL as it is.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(err("configuring"))?;
    // Fail at once on a lock held elsewhere instead of waiting.
    conn.busy_timeout(std::time::Duration::ZERO)
        .map_err(err("configuring"))?;
    // EXCLUSIVE before the first WAL access: the lock is held for the connection's life
    // and SQLite keeps the WAL index in private memory (no -shm file).
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(err("configuring"))?;
    // Take the lock now (it reads, never writes), so that a store in use elsewhere fails
    // here and its files cannot change under the checks below.
    conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
        .map_err(err("locking"))?;

    // The WAL's bytes; lane.db itself must not be opened again by this process while
    // SQLite holds it (closing any descriptor of it would drop SQLite's POSIX locks).
    let wal_path = files::side(db, "-wal");
    let wal = match std::fs::read(&wal_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(files::io_error(&wal_path, dir, "reading it", &e)),
    };
    if !header.wal_format && !wal.is_empty() {
        return Err(files::damaged(
            dir,
            format!(
                "{LOCAL_STORAGE_FILE} is in rollback-journal mode but {LOCAL_STORAGE_FILE}-wal \
                 holds {} bytes: that WAL does not belong to it",
                wal.len()
            ),
        ));
    }
    let scan = files::scan_wal(&wal, header.page_size);
    if let Some(why) = scan.damage {
        return Err(files::damaged(
            dir,
            format!("{LOCAL_STORAGE_FILE}-wal (the most recent commits): {why}"),
        ));
    }
    let file_len = std::fs::metadata(db)
        .map_err(|e| files::io_error(db, dir, "reading its size", &e))?
        .len();
    let file_pages = u32::try_from(file_len / u64::from(header.page_size)).unwrap_or(u32::MAX);
    let page_count: u32 = conn
        .pragma_query_value(None, "page_count", |row| row.get(0))
        .map_err(err("reading the header"))?;
    let in_wal = scan
        .pages
        .iter()
        .filter(|&&page| page > file_pages && page <= page_count)
        .count() as u64;
    let missing = u64::from(page_count.saturating_sub(file_pages)).saturating_sub(in_wal);
    if missing > 0 {
        return Err(files::damaged(
            dir,
            format!(
                "{LOCAL_STORAGE_FILE} was truncated: {missing} of the store's {page_count} \
                 pages are neither in the file ({file_pages} pages) nor in the WAL"
            ),
        ));
    }

    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(err("reading the header"))?;
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err("reading the header"))?;
    // The WAL may hold a newer version than lane.db's header (a migration not yet
    // folded into the file), never an older one.
    if application_id == APPLICATION_ID && version > SCHEMA_VERSION {
        return Err(unknown_version(db, version));
    }
    if application_id != APPLICATION_ID || version < header.user_version {
        return Err(files::damaged(
            dir,
            format!(
                "the header in the WAL (application_id {application_id:#x}, schema version \
                 {version}) is not the one in {LOCAL_STORAGE_FILE}"
            ),
        ));
    }
    if config.integrity_check {
        let mut problems = Vec::new();
        conn.pragma_query(None, "quick_check", |row| {
            problems.push(row.get::<_, String>(0)?);
            Ok(())
        })
        .map_err(err("checking integrity"))?;
        if problems != ["ok"] {
            return Err(files::damaged(
                dir,
                format!("SQLite's quick_check reports {}", problems.join("; ")),
            ));
        }
    }

    // Checked: from here on the store may be written.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(err("switching to WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LaneError::Storage(format!(
            "the store {} could not be put in WAL mode (SQLite answered '{mode}')",
            db.display()
        )));
    }
    let sync = match config.sync {
        LocalSyncMode::Full => "FULL",
        LocalSyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(err("configuring"))?;
    if let Some(max) = config.max_size {
        let pages = i64::try_from(max).unwrap_or(i64::MAX) / i64::from(header.page_size);
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(err("configuring"))?;
    }
    // A clean close folds the WAL into the file and deletes it.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .map_err(err("configuring"))?;
    Ok(version)
}

/// Runs the writer thread until every sender is dropped, then closes the connection and
/// reports it on `closed`.
pub(super) fn spawn_writer(
    conn: Connection,
    db: PathBuf,
    rx: mpsc::Receiver<Request>,
    on_closed: impl FnOnce() + Send + 'static,
) -> Result<()> {
    std::thread::Builder::new()
        .name("a3s-lane-storage".into())
        .spawn(move || {
            let mut writer = Writer { conn, db };
            writer.run(rx);
            drop(writer);
            on_closed();
        })
        .map(|_| ())
        .map_err(|e| LaneError::Storage(format!("cannot start the storage thread: {e}")))
}

struct Writer {
    conn: Connection,
    db: PathBuf,
}

struct PendingWrite {
    ops: Vec<StorageOp>,
    clear_all: bool,
    reply: Reply<()>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Request>) {
        let mut next = None;
        loop {
            let request = match next.take() {
                Some(request) => request,
                None => match rx.recv() {
                    Ok(request) => request,
                    Err(_) => return,
                },
            };
            match request {
                Request::Write {
                    ops,
                    clear_all,
                    reply,
                } => {
                    // Group commit: every write already waiting joins this transaction.
                    let mut writes = vec![PendingWrite {
                        ops,
                        clear_all,
                        reply,
                    }];
                    while let Ok(request) = rx.try_recv() {
                        match request {
                            Request::Write {
                                ops,
                                clear_all,
                                reply,
                            } => writes.push(PendingWrite {
                                ops,
                                clear_all,
                                reply,
                            }),
                            other => {
                                next = Some(other);
                                break;
                            }
                        }
                    }
                    self.commit(writes);
                }
                Request::LoadCommands(reply) => {
                    let _ = reply.send(self.load_commands());
                }
                Request::LoadDeadLetters(reply) => {
                    let _ = reply.send(self.load_dead_letters());
                }
                Request::LoadFinished(reply) => {
                    let _ = reply.send(self.load_finished());
                }
                Request::LoadSchedules(reply) => {
                    let _ = reply.send(self.load_schedules());
                }
                Request::MaxCommandId(reply) => {
                    let _ = reply.send(self.max_command_id());
                }
            }
        }
    }

    fn err(&self, doing: &'static str) -> impl Fn(rusqlite::Error) -> LaneError + '_ {
        move |e| describe(&self.db, doing, e)
    }

    fn commit(&mut self, writes: Vec<PendingWrite>) {
        let db = self.db.clone();
        let db = db.as_path();
        let err = |doing: &'static str| move |e| describe(db, doing, e);
        let mut results = Vec::with_capacity(writes.len());
        let outcome = (|| -> Result<()> {
            let mut tx = self.conn.transaction().map_err(err("writing"))?;
            let mut max_id: i64 = 0;
            for write in &writes {
                let mut savepoint = tx.savepoint().map_err(err("writing"))?;
                match apply_ops(&savepoint, &write.ops, write.clear_all, &mut max_id, db) {
                    Ok(()) => {
                        savepoint.commit().map_err(err("writing"))?;
                        results.push(Ok(()));
                    }
                    // Some errors (a full disk, I/O) make SQLite roll back the whole
                    // transaction by itself: then nothing of this batch is committed.
                    Err(error) if savepoint.is_autocommit() => return Err(error),
                    Err(error) => {
                        savepoint.rollback().map_err(err("writing"))?;
                        results.push(Err(error));
                    }
                }
            }
            if max_id > 0 {
                tx.execute(
                    "UPDATE meta SET value = max(value, ?1) WHERE key = 'max_command_id'",
                    [max_id],
                )
                .map_err(err("writing"))?;
            }
            tx.commit().map_err(err("committing"))
        })();
        match outcome {
            Ok(()) => {
                for (write, result) in writes.into_iter().zip(results) {
                    let _ = write.reply.send(result);
                }
            }
            Err(error) => {
                for write in writes {
                    let _ = write.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// The stored commands. A row whose payload cannot be read back (written by an older
    /// version, or damaged) is moved to the dead letters with the reason, so that every
    /// other command is recovered.
    fn load_commands(&mut self) -> Result<Vec<StoredCommand>> {
        let mut commands = Vec::new();
        let mut unreadable = Vec::new();
        {
            let mut statement = self
                .conn
                .prepare_cached(SELECT_COMMANDS)
                .map_err(|e| describe(&self.db, "loading commands", e))?;
            let rows = statement
                .query_map([], read_command_row)
                .map_err(|e| describe(&self.db, "loading commands", e))?;
            for row in rows {
                let row = row.map_err(|e| describe(&self.db, "loading commands", e))?;
                match row.parse() {
                    Ok(command) => commands.push(command),
                    Err(reason) => unreadable.push((row, reason)),
                }
            }
        }
        if !unreadable.is_empty() {
            self.dead_letter_unreadable(&unreadable)?;
        }
        Ok(commands)
    }

    fn dead_letter_unreadable(&mut self, rows: &[(CommandRow, String)]) -> Result<()> {
        let db = self.db.clone();
        let err = |e| describe(&db, "moving unreadable commands to the dead letters", e);
        let tx = self.conn.transaction().map_err(err)?;
        for (row, reason) in rows {
            insert_unreadable(&tx, row, reason).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn load_dead_letters(&self) -> Result<Vec<StoredDeadLetter>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT command_id, command_type, lane_id, error, attempts, failed_at, payload \
                 FROM dead_letters ORDER BY seq",
            )
            .map_err(self.err("loading dead letters"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(self.err("loading dead letters"))?;
        let mut letters = Vec::new();
        for row in rows {
            let (id, command_type, lane_id, error, attempts, failed_at, payload) =
                row.map_err(self.err("loading dead letters"))?;
            let (payload, error) = match payload.map(|text| parse_payload(&text)) {
                None => (None, error),
                Some(Ok(payload)) => (Some(payload), error),
                // Kept as text in the store; the letter itself is still worth showing.
                Some(Err(_)) if error.starts_with(UNREADABLE) => (None, error),
                Some(Err(reason)) => (None, format!("{error} ({UNREADABLE}: {reason})")),
            };
            letters.push(StoredDeadLetter {
                command_id: id as CommandId,
                command_type,
                lane_id,
                error,
                attempts: attempts as u32,
                failed_at: failed_at as u64,
                payload,
            });
        }
        Ok(letters)
    }

    /// The finished commands' records that have not expired, in the order they were
    /// stored (oldest finish first).
    fn load_finished(&self) -> Result<Vec<StoredFinished>> {
        let mut statement = self
            .conn
            .prepare_cached(SELECT_FINISHED)
            .map_err(self.err("loading finished commands"))?;
        let rows = statement
            .query_map([ms_to_sql(now_ms())], read_finished_row)
            .map_err(self.err("loading finished commands"))?;
        let mut records = Vec::new();
        for row in rows {
            let row = match row {
                Ok(row) => row,
                // A column of the wrong type (a damaged row): a record is only for
                // looking up, so it is left out rather than failing the queue's start.
                Err(
                    rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::FromSqlConversionFailure(..)
                    | rusqlite::Error::IntegralValueOutOfRange(..),
                ) => continue,
                Err(e) => return Err(describe(&self.db, "loading finished commands", e)),
            };
            // A state no a3s-lane keeps (a damaged row): nothing to show for it.
            if let Some(record) = row.parse() {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// The recurring schedules, by name. A row that cannot be read back is damage: the
    /// queue must not start without a schedule it was given (its instants would stop
    /// firing without a word), so loading fails, naming the row and what to do.
    fn load_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let mut statement = self
            .conn
            .prepare_cached(SELECT_SCHEDULES)
            .map_err(self.err("loading schedules"))?;
        let rows = statement
            .query_map([], read_schedule_row)
            .map_err(self.err("loading schedules"))?;
        let mut schedules = Vec::new();
        for row in rows {
            let row = row.map_err(|e| match e {
                rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::FromSqlConversionFailure(..) => unreadable_schedule(
                    &self.db,
                    "a row of the table",
                    &format!("a column of the wrong type: {e}"),
                ),
                e => describe(&self.db, "loading schedules", e),
            })?;
            let info = row.parse().map_err(|reason| {
                unreadable_schedule(&self.db, &format!("schedule {:?}", row.name), &reason)
            })?;
            schedules.push(info);
        }
        Ok(schedules)
    }

    fn max_command_id(&self) -> Result<CommandId> {
        let max: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'max_command_id'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.err("reading the id high-water mark"))?;
        let max = max.ok_or_else(|| {
            LaneError::Storage(format!(
                "the store {} has lost its id high-water mark (meta table row missing); it is \
                 damaged: restore it from a backup",
                self.db.display()
            ))
        })?;
        Ok(max as CommandId)
    }
}

/// The start of the error of a dead letter made for a command whose payload could not be
/// read back.
pub(super) const UNREADABLE: &str = "its stored payload cannot be read back";

/// Parses a stored payload. Anything `lane_core` accepts (at most 100 levels deep) reads
/// back; serde_json's own limit is 128 levels.
pub(super) fn parse_payload(text: &str) -> std::result::Result<Value, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Selects every `commands` row, in id order, in [`read_command_row`]'s columns.
const SELECT_COMMANDS: &str = "SELECT id, lane_id, command_type, payload, \
     attempts, created_at, not_before, start_by, idempotency_key, group_key, replayable \
     FROM commands ORDER BY id";

/// A `commands` row as stored, before its payload is parsed.
#[derive(Debug, Clone)]
pub(super) struct CommandRow {
    pub(super) id: i64,
    pub(super) lane_id: String,
    pub(super) command_type: String,
    pub(super) payload: String,
    pub(super) attempts: i64,
    pub(super) created_at: i64,
    /// When a delayed command may start (ms since the epoch); NULL: not delayed.
    pub(super) not_before: Option<i64>,
    /// Its start-by deadline (ms since the epoch); NULL: none.
    pub(super) start_by: Option<i64>,
    /// Its idempotency key; NULL: none.
    pub(super) idempotency_key: Option<String>,
    /// Its group inside its lane; NULL: none.
    pub(super) group_key: Option<String>,
    /// 0: it cannot be replayed (see [`StoredCommand::replayable`]).
    pub(super) replayable: bool,
}

/// A time in milliseconds since the epoch as the store keeps it (an INTEGER).
fn ms_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored time read back (a negative one, which no a3s-lane writes, as the epoch).
fn ms_from_sql(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

impl CommandRow {
    pub(super) fn parse(&self) -> std::result::Result<StoredCommand, String> {
        Ok(StoredCommand {
            id: self.id as CommandId,
            lane_id: self.lane_id.clone(),
            command_type: self.command_type.clone(),
            payload: parse_payload(&self.payload)?,
            attempts: self.attempts as u32,
            created_at: self.created_at as u64,
            not_before: self.not_before.map(ms_from_sql),
            start_by: self.start_by.map(ms_from_sql),
            key: self.idempotency_key.clone(),
            group: self.group_key.clone(),
            replayable: self.replayable,
        })
    }
}

/// Reads `id, lane_id, command_type, payload, attempts, created_at, not_before,
/// start_by, idempotency_key, group_key, replayable`.
pub(super) fn read_command_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CommandRow> {
    Ok(CommandRow {
        id: row.get(0)?,
        lane_id: row.get(1)?,
        command_type: row.get(2)?,
        payload: row.get(3)?,
        attempts: row.get(4)?,
        created_at: row.get(5)?,
        not_before: row.get(6)?,
        start_by: row.get(7)?,
        idempotency_key: row.get(8)?,
        group_key: row.get(9)?,
        replayable: row.get(10)?,
    })
}

/// Stores a command (replacing one with its id) in a store of schema
/// [`SCHEMA_VERSION`].
const INSERT_COMMAND: &str = "INSERT OR REPLACE INTO commands \
     (id, lane_id, command_type, payload, attempts, created_at, not_before, start_by, \
     idempotency_key, group_key, replayable) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// Stores a command row read from a store (replacing one with its id).
pub(super) fn insert_command_row(conn: &Connection, row: &CommandRow) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT_COMMAND)?.execute(params![
        row.id,
        row.lane_id,
        row.command_type,
        row.payload,
        row.attempts,
        row.created_at,
        row.not_before,
        row.start_by,
        row.idempotency_key,
        row.group_key,
        row.replayable,
    ])?;
    Ok(())
}

/// Moves a command whose payload cannot be read back to the dead letters: its text is
/// kept there (for a person to look at) and it is never run.
pub(super) fn insert_unreadable(
    conn: &Connection,
    row: &CommandRow,
    reason: &str,
) -> rusqlite::Result<()> {
    let now = ms_to_sql(now_ms());
    conn.prepare_cached(
        "INSERT OR REPLACE INTO dead_letters \
         (command_id, command_type, lane_id, error, attempts, failed_at, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        row.id,
        row.command_type,
        row.lane_id,
        format!("{UNREADABLE} ({reason}), so it was not run"),
        row.attempts,
        now,
        row.payload,
    ])?;
    conn.prepare_cached("DELETE FROM commands WHERE id = ?1")?
        .execute([row.id])?;
    Ok(())
}

/// Milliseconds since the Unix epoch now (the epoch itself if the clock is before it).
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The columns of a `finished` row, in [`read_finished_row`]'s order.
macro_rules! finished_columns {
    () => {
        "id, lane_id, state, command_type, attempts, submitted_at, started_at, finished_at, \
         result, error, keep_last, expires_at, seq, lane_seq"
    };
}

/// Selects the records that have not expired at `?1`, in the order they were stored.
const SELECT_FINISHED: &str = concat!(
    "SELECT ",
    finished_columns!(),
    " FROM finished WHERE expires_at > ?1 ORDER BY seq"
);

/// Selects every record from command id `?1` on, in id order (salvage's scan).
pub(super) const SELECT_FINISHED_FROM_ID: &str = concat!(
    "SELECT ",
    finished_columns!(),
    " FROM finished WHERE id >= ?1 ORDER BY id"
);

/// Stores a row as it was read, its places included.
const INSERT_FINISHED_ROW: &str = concat!(
    "INSERT OR REPLACE INTO finished (",
    finished_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
);

/// Stores a record (replacing one with its id), after every record of the table (`seq`)
/// and of its lane and state (`lane_seq`). Both are the last entry of an index.
const INSERT_FINISHED: &str = "INSERT OR REPLACE INTO finished (id, lane_id, state, \
     command_type, attempts, submitted_at, started_at, finished_at, result, error, \
     keep_last, expires_at, seq, lane_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
     ?11, ?12, (SELECT coalesce(max(seq), 0) + 1 FROM finished), \
     (SELECT coalesce(max(lane_seq), 0) + 1 FROM finished WHERE lane_id = ?2 AND state = ?3))";

/// Drops the records of lane `?1` and state `?2` older than the newest `?4`, counted
/// back from record `?3` (the one just stored): an index range, whatever `keep_last`.
const PRUNE_FINISHED_BY_COUNT: &str = "DELETE FROM finished WHERE lane_id = ?1 AND state = ?2 \
     AND lane_seq <= (SELECT lane_seq FROM finished WHERE id = ?3) - ?4";

/// Drops every record that expired at `?1` (an index range).
const PRUNE_FINISHED_BY_EXPIRY: &str = "DELETE FROM finished WHERE expires_at <= ?1";

/// A `finished` row as stored, before its state, result and error are read.
#[derive(Debug, Clone)]
pub(super) struct FinishedRow {
    pub(super) id: i64,
    pub(super) lane_id: String,
    /// The [`CommandState`]'s name.
    pub(super) state: String,
    pub(super) command_type: String,
    pub(super) attempts: i64,
    pub(super) submitted_at: Option<i64>,
    pub(super) started_at: Option<i64>,
    pub(super) finished_at: Option<i64>,
    /// The result's JSON.
    pub(super) result: Option<String>,
    /// The [`CommandFailure`]'s JSON.
    pub(super) error: Option<String>,
    pub(super) keep_last: i64,
    pub(super) expires_at: i64,
    /// Its place among all records (0 for a record not yet stored: [`save_finished`]
    /// gives it one).
    pub(super) seq: i64,
    /// Its place among its lane's records of its state (as `seq`).
    pub(super) lane_seq: i64,
}

impl FinishedRow {
    /// The row of `finished` (whose id, `id`, was checked to fit).
    fn new(id: i64, finished: &StoredFinished, db: &Path) -> Result<Self> {
        let status = &finished.status;
        let error = status
            .error
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| {
                LaneError::Storage(format!(
                    "the error of finished command {id} cannot be stored in {}: {e}",
                    db.display()
                ))
            })?;
        Ok(Self {
            id,
            lane_id: status.lane_id.clone(),
            state: status.state.as_str().to_owned(),
            command_type: status.command_type.clone(),
            attempts: i64::from(status.attempts),
            submitted_at: status.submitted_at_ms.map(ms_to_sql),
            started_at: status.started_at_ms.map(ms_to_sql),
            finished_at: status.finished_at_ms.map(ms_to_sql),
            result: status.result.as_ref().map(Value::to_string),
            error,
            keep_last: i64::try_from(finished.keep_last).unwrap_or(i64::MAX),
            expires_at: ms_to_sql(finished.expires_at_ms),
            seq: 0,
            lane_seq: 0,
        })
    }

    /// The record, or `None` for a state that no a3s-lane keeps (a damaged row). A
    /// result or error that cannot be read back (a result nested deeper than the 128
    /// levels serde_json reads) becomes an error of kind `other` that says so: the
    /// record still shows how the command ended.
    pub(super) fn parse(&self) -> Option<StoredFinished> {
        let state = CommandState::ALL
            .into_iter()
            .find(|state| state.as_str() == self.state)?;
        let unreadable = |what: &str, reason: String| CommandFailure {
            kind: "other".to_owned(),
            message: format!("its stored {what} cannot be read back ({reason})"),
            timeout_ms: None,
        };
        let mut error = self.error.as_deref().map(|text| {
            serde_json::from_str::<CommandFailure>(text)
                .unwrap_or_else(|e| unreadable("error", e.to_string()))
        });
        let result = match self.result.as_deref().map(parse_payload) {
            None => None,
            Some(Ok(result)) => Some(result),
            Some(Err(reason)) => {
                error.get_or_insert_with(|| unreadable("result", reason));
                None
            }
        };
        Some(StoredFinished {
            status: CommandStatus {
                id: self.id as CommandId,
                lane_id: self.lane_id.clone(),
                command_type: self.command_type.clone(),
                state,
                attempts: u32::try_from(self.attempts.max(0)).unwrap_or(u32::MAX),
                submitted_at_ms: self.submitted_at.map(ms_from_sql),
                started_at_ms: self.started_at.map(ms_from_sql),
                finished_at_ms: self.finished_at.map(ms_from_sql),
                result,
                error,
            },
            keep_last: usize::try_from(self.keep_last.max(0)).unwrap_or(usize::MAX),
            expires_at_ms: ms_from_sql(self.expires_at),
        })
    }
}

/// Reads the columns of `finished_columns!()`.
pub(super) fn read_finished_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FinishedRow> {
    Ok(FinishedRow {
        id: row.get(0)?,
        lane_id: row.get(1)?,
        state: row.get(2)?,
        command_type: row.get(3)?,
        attempts: row.get(4)?,
        submitted_at: row.get(5)?,
        started_at: row.get(6)?,
        finished_at: row.get(7)?,
        result: row.get(8)?,
        error: row.get(9)?,
        keep_last: row.get(10)?,
        expires_at: row.get(11)?,
        seq: row.get(12)?,
        lane_seq: row.get(13)?,
    })
}

/// Stores `row` as the newest record of its lane and state, then drops that lane and
/// state's records beyond the newest `keep_last`, and every record expired at `now`.
/// Each step is an index lookup or range: the cost does not grow with the table.
fn save_finished(conn: &Connection, row: &FinishedRow, now: u64) -> rusqlite::Result<()> {
    // A command that finishes again (redriven) leaves its place: the records after it
    // in its old list move up one, so every list stays numbered without gaps and
    // "beyond the newest keep_last" stays an index range. Rare, so its cost (the records
    // after it) does not matter.
    let old: Option<(String, String, i64)> = conn
        .prepare_cached("SELECT lane_id, state, lane_seq FROM finished WHERE id = ?1")?
        .query_row([row.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((lane_id, state, lane_seq)) = old {
        conn.prepare_cached("DELETE FROM finished WHERE id = ?1")?
            .execute([row.id])?;
        conn.prepare_cached(
            "UPDATE finished SET lane_seq = lane_seq - 1 \
             WHERE lane_id = ?1 AND state = ?2 AND lane_seq > ?3",
        )?
        .execute(params![lane_id, state, lane_seq])?;
    }
    conn.prepare_cached(INSERT_FINISHED)?.execute(params![
        row.id,
        row.lane_id,
        row.state,
        row.command_type,
        row.attempts,
        row.submitted_at,
        row.started_at,
        row.finished_at,
        row.result,
        row.error,
        row.keep_last,
        row.expires_at,
    ])?;
    conn.prepare_cached(PRUNE_FINISHED_BY_COUNT)?
        .execute(params![row.lane_id, row.state, row.id, row.keep_last,])?;
    conn.prepare_cached(PRUNE_FINISHED_BY_EXPIRY)?
        .execute([ms_to_sql(now)])?;
    Ok(())
}

/// Stores a record read from a store as it was, its places included (replacing one
/// with its id).
pub(super) fn insert_finished_row(conn: &Connection, row: &FinishedRow) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT_FINISHED_ROW)?.execute(params![
        row.id,
        row.lane_id,
        row.state,
        row.command_type,
        row.attempts,
        row.submitted_at,
        row.started_at,
        row.finished_at,
        row.result,
        row.error,
        row.keep_last,
        row.expires_at,
        row.seq,
        row.lane_seq,
    ])?;
    Ok(())
}

fn to_i64(id: CommandId, db: &Path) -> Result<i64> {
    i64::try_from(id).map_err(|_| {
        LaneError::Storage(format!(
            "command id {id} does not fit the store {} (ids up to {} are supported)",
            db.display(),
            i64::MAX
        ))
    })
}

/// Stores a command (replacing one with its id) and raises the id high-water mark.
fn save_command(
    conn: &Connection,
    command: &StoredCommand,
    max_id: &mut i64,
    db: &Path,
) -> Result<()> {
    let id = to_i64(command.id, db)?;
    *max_id = (*max_id).max(id);
    conn.prepare_cached(INSERT_COMMAND)
        .and_then(|mut s| {
            s.execute(params![
                id,
                command.lane_id,
                command.command_type,
                command.payload.to_string(),
                i64::from(command.attempts),
                command.created_at as i64,
                command.not_before.map(ms_to_sql),
                command.start_by.map(ms_to_sql),
                command.key,
                command.group,
                command.replayable,
            ])
        })
        .map_err(|e| describe(db, "saving a command", e))?;
    Ok(())
}

/// Stores a recurring schedule (replacing the one of its name).
fn save_schedule(conn: &Connection, info: &ScheduleInfo, db: &Path) -> Result<()> {
    let row = ScheduleRow::new(info, db)?;
    insert_schedule_row(conn, &row).map_err(|e| describe(db, "saving a schedule", e))
}

fn apply_ops(
    conn: &Connection,
    ops: &[StorageOp],
    clear_all: bool,
    max_id: &mut i64,
    db: &Path,
) -> Result<()> {
    let err = |doing: &'static str| move |e| describe(db, doing, e);
    if clear_all {
        conn.execute_batch(
            "DELETE FROM commands; DELETE FROM dead_letters; DELETE FROM finished; \
             DELETE FROM schedules;",
        )
        .map_err(err("clearing"))?;
    }
    for op in ops {
        match op {
            StorageOp::SaveCommand(command) => save_command(conn, command, max_id, db)?,
            StorageOp::SaveFinished(finished) => {
                let id = to_i64(finished.status.id, db)?;
                *max_id = (*max_id).max(id);
                let row = FinishedRow::new(id, finished, db)?;
                conn.prepare_cached("DELETE FROM commands WHERE id = ?1")
                    .and_then(|mut s| s.execute([id]))
                    .map_err(err("removing a finished command"))?;
                save_finished(conn, &row, now_ms()).map_err(err("saving a finished command"))?;
            }
            StorageOp::RemoveCommand(id) => {
                let id = to_i64(*id, db)?;
                conn.prepare_cached("DELETE FROM commands WHERE id = ?1")
                    .and_then(|mut s| s.execute([id]))
                    .map_err(err("removing a command"))?;
            }
            StorageOp::SaveDeadLetter(letter) => {
                let id = to_i64(letter.command_id, db)?;
                *max_id = (*max_id).max(id);
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO dead_letters \
                     (command_id, command_type, lane_id, error, attempts, failed_at, payload) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        letter.command_type,
                        letter.lane_id,
                        letter.error,
                        i64::from(letter.attempts),
                        letter.failed_at as i64,
                        letter.payload.as_ref().map(Value::to_string),
                    ])
                })
                .map_err(err("saving a dead letter"))?;
            }
            StorageOp::RemoveDeadLetter(id) => {
                let id = to_i64(*id, db)?;
                conn.prepare_cached("DELETE FROM dead_letters WHERE command_id = ?1")
                    .and_then(|mut s| s.execute([id]))
                    .map_err(err("removing a dead letter"))?;
            }
            StorageOp::ClearDeadLetters => {
                conn.execute("DELETE FROM dead_letters", [])
                    .map_err(err("clearing dead letters"))?;
            }
            StorageOp::SaveSchedule(info) => save_schedule(conn, info, db)?,
            StorageOp::RemoveSchedule(name) => {
                conn.prepare_cached("DELETE FROM schedules WHERE name = ?1")
                    .and_then(|mut s| s.execute([name]))
                    .map_err(err("removing a schedule"))?;
            }
            // Both in this write's savepoint of the batch's transaction: the instant's
            // command is stored if and only if the schedule moved past the instant is.
            StorageOp::FireSchedule { command, schedule } => {
                save_command(conn, command, max_id, db)?;
                save_schedule(conn, schedule, db)?;
            }
        }
    }
    Ok(())
}

/// Selects every schedule, by name, in [`read_schedule_row`]'s columns.
const SELECT_SCHEDULES: &str = "SELECT rowid, name, info FROM schedules ORDER BY name";

/// Selects every schedule from row `?1` on, in row order (salvage's scan).
pub(super) const SELECT_SCHEDULES_FROM_ROWID: &str =
    "SELECT rowid, name, info FROM schedules WHERE rowid >= ?1 ORDER BY rowid";

/// A `schedules` row as stored, before its JSON is read.
#[derive(Debug, Clone)]
pub(super) struct ScheduleRow {
    /// Its SQLite row number (only salvage uses it, to find its way past damage).
    pub(super) rowid: i64,
    /// The schedule's name (the key).
    pub(super) name: String,
    /// The [`ScheduleInfo`]'s JSON.
    pub(super) info: String,
}

impl ScheduleRow {
    /// The row of `info` (its row number is SQLite's to give).
    fn new(info: &ScheduleInfo, db: &Path) -> Result<Self> {
        let text = serde_json::to_string(info).map_err(|e| {
            LaneError::Storage(format!(
                "schedule {:?} cannot be stored in {}: {e}",
                info.schedule.name,
                db.display()
            ))
        })?;
        Ok(Self {
            rowid: 0,
            name: info.schedule.name.clone(),
            info: text,
        })
    }

    /// The schedule, or why it cannot be read back: JSON that does not parse as a
    /// [`ScheduleInfo`], or one of another name than its row's.
    pub(super) fn parse(&self) -> std::result::Result<ScheduleInfo, String> {
        let info: ScheduleInfo = serde_json::from_str(&self.info).map_err(|e| e.to_string())?;
        if info.schedule.name != self.name {
            return Err(format!(
                "it holds schedule {:?}, not the row's name",
                info.schedule.name
            ));
        }
        Ok(info)
    }
}

/// Reads `rowid, name, info`.
pub(super) fn read_schedule_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRow> {
    Ok(ScheduleRow {
        rowid: row.get(0)?,
        name: row.get(1)?,
        info: row.get(2)?,
    })
}

/// Stores a schedule row (replacing the one of its name).
pub(super) fn insert_schedule_row(conn: &Connection, row: &ScheduleRow) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO schedules (name, info) VALUES (?1, ?2)")?
        .execute(params![row.name, row.info])?;
    Ok(())
}

/// The error for a schedule row that cannot be read back.
fn unreadable_schedule(db: &Path, what: &str, reason: &str) -> LaneError {
    LaneError::Storage(format!(
        "the store {} is damaged: {what} of its recurring schedules cannot be read back \
         ({reason}); a queue does not start without one of its schedules (its instants would \
         stop firing unnoticed): copy the readable ones into a new store with \
         LocalStorage::salvage (which reports the rest), or restore it from a backup",
        db.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// The record of command `id`: `lane`, completed, kept for an hour from `now`.
    fn record(id: i64, lane: &str, keep_last: usize, now: u64) -> FinishedRow {
        let mut status =
            CommandStatus::new(id as CommandId, lane, "job", CommandState::Completed, 1);
        status.finished_at_ms = Some(now);
        status.result = Some(serde_json::json!({ "n": id }));
        let finished = StoredFinished {
            status,
            keep_last,
            expires_at_ms: now + 3_600_000,
        };
        FinishedRow::new(id, &finished, Path::new("test")).unwrap()
    }

    /// The virtual machine steps SQLite takes to store and prune `row`, and how many of
    /// them stepped through a table in a full scan.
    fn cost(conn: &Connection, row: &FinishedRow, now: u64) -> (i32, i32) {
        let mut total = (0, 0);
        let mut run = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
            let mut statement = conn.prepare(sql).unwrap();
            statement.execute(params).unwrap();
            total.0 += statement.get_status(StatementStatus::VmStep);
            total.1 += statement.get_status(StatementStatus::FullscanStep);
        };
        run(
            INSERT_FINISHED,
            params![
                row.id,
                row.lane_id,
                row.state,
                row.command_type,
                row.attempts,
                row.submitted_at,
                row.started_at,
                row.finished_at,
                row.result,
                row.error,
                row.keep_last,
                row.expires_at,
            ],
        );
        run(
            PRUNE_FINISHED_BY_COUNT,
            params![row.lane_id, row.state, row.id, row.keep_last],
        );
        run(PRUNE_FINISHED_BY_EXPIRY, params![ms_to_sql(now)]);
        total
    }

    #[test]
    fn storing_and_pruning_a_record_costs_the_same_however_many_are_kept() {
        let now = 1_800_000_000_000;
        let mut measured = Vec::new();
        for kept in [100_i64, 50_000] {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            // `kept` records of the measured lane, as many of another, as stored one by
            // one (alternating lanes).
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                 INSERT INTO finished (id, lane_id, state, command_type, attempts, keep_last, \
                 expires_at, seq, lane_seq) \
                 SELECT i * 2 + lane, CASE lane WHEN 0 THEN 'jobs' ELSE 'other' END, \
                 'completed', 'job', 1, 1000000, ?2, i * 2 + lane, i \
                 FROM n, (SELECT 0 AS lane UNION ALL SELECT 1)",
                params![kept, ms_to_sql(now + 3_600_000)],
            )
            .unwrap();
            let count = || -> i64 {
                conn.query_row(
                    "SELECT count(*) FROM finished WHERE lane_id = 'jobs'",
                    [],
                    |row| row.get(0),
                )
                .unwrap()
            };
            assert_eq!(count(), kept);
            let next = kept * 2 + 2;
            // Keeping every record, then keeping `kept`: the two oldest go.
            let keep_all = cost(&conn, &record(next, "jobs", 1_000_000, now), now);
            let evict_two = cost(&conn, &record(next + 1, "jobs", kept as usize, now), now);
            assert_eq!(count(), kept);
            measured.push((kept, keep_all, evict_two));
        }
        let [(_, small_all, small_two), (_, big_all, big_two)] = measured[..] else {
            unreachable!()
        };
        assert_eq!(
            (small_all.1, small_two.1, big_all.1, big_two.1),
            (0, 0, 0, 0),
            "no full scan: {measured:?}"
        );
        // A deeper b-tree costs a few steps more, not 500 times as many.
        assert!(big_all.0 < small_all.0 + 40, "{measured:?}");
        assert!(big_two.0 < small_two.0 + 40, "{measured:?}");
        assert!(
            small_two.0 > small_all.0,
            "two records were deleted: {measured:?}"
        );
    }
}
