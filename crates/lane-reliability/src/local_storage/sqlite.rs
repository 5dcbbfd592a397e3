//! The SQLite side of [`LocalStorage`](super::LocalStorage): opening and checking the
//! file, the schema, and the writer thread that owns the connection.
//!
//! Every SQLite call happens on that one thread, never on a tokio worker. Requests arrive
//! on a channel; consecutive write requests are committed in ONE transaction (one WAL
//! fsync), each inside its own savepoint so that one bad request fails alone.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use lane_core::{CommandId, LaneError, Result, StorageOp, StoredCommand, StoredDeadLetter};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{LocalStorageConfig, LocalSyncMode};

/// `PRAGMA application_id` of an a3s-lane store ("A3SL").
const APPLICATION_ID: i32 = 0x4133_534c;
/// `PRAGMA user_version`: the schema version this code reads and writes.
const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
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

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

pub(super) enum Request {
    Write {
        ops: Vec<StorageOp>,
        clear_all: bool,
        reply: Reply<()>,
    },
    LoadCommands(Reply<Vec<StoredCommand>>),
    LoadDeadLetters(Reply<Vec<StoredDeadLetter>>),
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
            "the store {path} is damaged ({error}) while {doing}; it was not used, so that no \
             command is silently lost: restore it from a backup, or move the directory aside \
             to start with an empty queue"
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
            "the store {path} is not writable ({error}); check the permissions of the file and \
             its directory"
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
        conn.execute_batch(&format!("BEGIN; {SCHEMA} COMMIT;"))?;
        conn.close().map_err(|(_, e)| e)
    };
    build().map_err(|e| describe(&tmp, "creating the store", e))?;
    let io = |what: &str, e: std::io::Error| {
        LaneError::Storage(format!("{what} {} failed: {e}", db.display()))
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

/// Opens an existing store, takes its exclusive lock and checks it.
pub(super) fn open(db: &Path, config: &LocalStorageConfig) -> Result<Connection> {
    let err = |doing: &'static str| move |e| describe(db, doing, e);
    // No CREATE flag: a missing file is an error here, never a fresh empty queue.
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err("opening"))?;
    // Fail at once on a lock held elsewhere instead of waiting.
    conn.busy_timeout(std::time::Duration::ZERO)
        .map_err(err("configuring"))?;
    // EXCLUSIVE before WAL: the lock is held for the connection's life and SQLite keeps
    // the WAL index in private memory (no -shm file): a second process cannot open it.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(err("configuring"))?;
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
    // Take the lock now, so that a store in use elsewhere fails here rather than at
    // the first submit.
    conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
        .map_err(err("locking"))?;

    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(err("reading the header"))?;
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err("reading the header"))?;
    if application_id != APPLICATION_ID {
        return Err(LaneError::Storage(format!(
            "{} is not an a3s-lane store (SQLite application_id {application_id:#x}, expected \
             {APPLICATION_ID:#x}); point LocalStorage at its own directory",
            db.display()
        )));
    }
    if version != SCHEMA_VERSION {
        return Err(LaneError::Storage(format!(
            "the store {} has schema version {version}, this a3s-lane reads version \
             {SCHEMA_VERSION}; open it with the a3s-lane version that wrote it",
            db.display()
        )));
    }
    if config.integrity_check {
        let mut problems = Vec::new();
        conn.pragma_query(None, "quick_check", |row| {
            problems.push(row.get::<_, String>(0)?);
            Ok(())
        })
        .map_err(err("checking integrity"))?;
        if problems != ["ok"] {
            return Err(LaneError::Storage(format!(
                "the store {} is damaged: {}; it was not used, so that no command is silently \
                 lost: restore it from a backup, or move the directory aside to start with an \
                 empty queue",
                db.display(),
                problems.join("; ")
            )));
        }
    }
    if let Some(max) = config.max_size {
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |row| row.get(0))
            .map_err(err("configuring"))?;
        let pages = i64::try_from(max).unwrap_or(i64::MAX) / page_size.max(1);
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(err("configuring"))?;
    }
    Ok(conn)
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

    fn load_commands(&self) -> Result<Vec<StoredCommand>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, lane_id, command_type, payload, attempts, created_at \
                 FROM commands ORDER BY id",
            )
            .map_err(self.err("loading commands"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(self.err("loading commands"))?;
        let mut commands = Vec::new();
        for row in rows {
            let (id, lane_id, command_type, payload, attempts, created_at) =
                row.map_err(self.err("loading commands"))?;
            commands.push(StoredCommand {
                id: id as CommandId,
                lane_id,
                command_type,
                payload: self.parse_payload(&payload, "command", id)?,
                attempts: attempts as u32,
                created_at: created_at as u64,
            });
        }
        Ok(commands)
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
            let payload = match payload {
                Some(text) => Some(self.parse_payload(&text, "dead letter", id)?),
                None => None,
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

    fn parse_payload(&self, text: &str, what: &str, id: i64) -> Result<Value> {
        serde_json::from_str(text).map_err(|e| {
            LaneError::Storage(format!(
                "the store {} holds an unreadable payload for {what} {id} ({e}); it is damaged: \
                 restore it from a backup",
                self.db.display()
            ))
        })
    }
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

fn apply_ops(
    conn: &Connection,
    ops: &[StorageOp],
    clear_all: bool,
    max_id: &mut i64,
    db: &Path,
) -> Result<()> {
    let err = |doing: &'static str| move |e| describe(db, doing, e);
    if clear_all {
        conn.execute_batch("DELETE FROM commands; DELETE FROM dead_letters;")
            .map_err(err("clearing"))?;
    }
    for op in ops {
        match op {
            StorageOp::SaveCommand(command) => {
                let id = to_i64(command.id, db)?;
                *max_id = (*max_id).max(id);
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO commands \
                     (id, lane_id, command_type, payload, attempts, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        command.lane_id,
                        command.command_type,
                        command.payload.to_string(),
                        i64::from(command.attempts),
                        command.created_at as i64,
                    ])
                })
                .map_err(err("saving a command"))?;
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
        }
    }
    Ok(())
}
