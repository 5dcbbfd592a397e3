//! [`LocalStorage::salvage`]: copies every readable command, dead letter, finished
//! command's record and recurring schedule of a damaged store into a new one, without
//! touching the damaged store's files.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use lane_core::{LaneError, Result};
use rusqlite::{Connection, OpenFlags, params};

use super::sqlite::{self, CommandRow, FinishedRow, ScheduleRow};
use super::{LOCAL_STORAGE_FILE, LocalStorage, files};

/// What [`LocalStorage::salvage`] copied into the new store, and what it could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// The new store's database file.
    pub new_store: PathBuf,
    /// Commands copied; they run again when a queue opens the new store.
    pub commands: usize,
    /// Dead letters copied (commands whose payload could not be read back included).
    pub dead_letters: usize,
    /// Finished commands' records copied (a store of schema version 3 or later keeps
    /// them; expired ones are copied too and dropped by the new store as it prunes).
    pub finished: usize,
    /// Recurring schedules copied (a store of schema version 4 or later keeps them), each
    /// as it stood: paused or not, its next and last instants, its counts.
    pub schedules: usize,
    /// Rows that could not be read, or were copied only as dead letters.
    pub unreadable: Vec<UnreadableRows>,
    /// What was wrong with the damaged store's files and how the copy worked around it
    /// (a repaired header, a WAL that could not be used), one sentence each.
    pub notes: Vec<String>,
}

/// Rows of the damaged store that [`LocalStorage::salvage`] could not copy as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnreadableRows {
    /// `"commands"`, `"dead_letters"`, `"finished"` or `"schedules"`.
    pub table: &'static str,
    /// The command ids (for dead letters: their sequence numbers in the store; for
    /// schedules: their SQLite row numbers) that could not be read. A range over damaged
    /// pages may include ids that had no row.
    pub ids: RangeInclusive<u64>,
    /// What went wrong, and what became of the rows.
    pub reason: String,
}

impl LocalStorage {
    /// Copies every readable command, dead letter, finished command's record and
    /// recurring schedule of the store in `damaged_dir` into a new store in `new_dir`,
    /// for a store that [`LocalStorage::open`] refuses as damaged. The damaged store's files are only read (the work is done on a copy in
    /// a temporary directory), so salvage can be retried, and the files kept for a
    /// person to look at. Stop the process using the store first: a store in use is
    /// copied as it is at that instant.
    ///
    /// What is read: everything SQLite can still read from the copy, after repairing
    /// its header if that is damaged. Commits in the WAL are used up to the first frame
    /// that fails its checksum; a WAL whose header is damaged cannot be used at all (its
    /// commits are lost: [`SalvageReport::notes`] says so). Rows on damaged pages are
    /// skipped and listed in [`SalvageReport::unreadable`]; a command whose payload
    /// cannot be read back becomes a dead letter that keeps the payload's text.
    ///
    /// `new_dir` is created if missing (its parent must exist) and must not hold a store
    /// already. The new store appears whole or not at all; ids of the salvaged commands
    /// are kept, and new ids continue after the largest the damaged store knew.
    pub async fn salvage(
        damaged_dir: impl AsRef<Path>,
        new_dir: impl AsRef<Path>,
    ) -> Result<SalvageReport> {
        let damaged_dir = damaged_dir.as_ref().to_path_buf();
        let new_dir = new_dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || salvage(&damaged_dir, &new_dir))
            .await
            .map_err(|e| LaneError::Storage(format!("salvaging the store panicked: {e}")))?
    }
}

fn storage_error(message: String) -> LaneError {
    LaneError::Storage(message)
}

fn salvage(damaged_dir: &Path, new_dir: &Path) -> Result<SalvageReport> {
    let source = damaged_dir.join(LOCAL_STORAGE_FILE);
    if !source.is_file() {
        return Err(storage_error(format!(
            "nothing to salvage in {}: {LOCAL_STORAGE_FILE} is missing (a WAL alone holds \
             only recent changes to it); restore it from a backup",
            damaged_dir.display()
        )));
    }
    refuse_newer(&source)?;
    let new_db = prepare_target(damaged_dir, new_dir)?;
    let mut notes = Vec::new();
    let work = tempfile::tempdir()
        .map_err(|e| storage_error(format!("cannot create a temporary directory: {e}")))?;
    let copy = work.path().join(LOCAL_STORAGE_FILE);
    let copy_io = |what: &Path, e: std::io::Error| {
        storage_error(format!(
            "cannot copy {} to {}: {e}",
            what.display(),
            work.path().display()
        ))
    };
    std::fs::copy(&source, &copy).map_err(|e| copy_io(&source, e))?;
    let wal = files::side(&source, "-wal");
    let wal_bytes = match std::fs::read(&wal) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(copy_io(&wal, e)),
    };
    let page_size = repair_header(&copy, &wal_bytes, &mut notes)?;
    let scan = files::scan_wal(&wal_bytes, page_size);
    match &scan.damage {
        Some(why) if scan.commits == 0 => notes.push(format!(
            "{LOCAL_STORAGE_FILE}-wal could not be used ({why}): the commands of its commits \
             (those not yet folded into {LOCAL_STORAGE_FILE}) are lost"
        )),
        Some(why) => notes.push(format!(
            "{LOCAL_STORAGE_FILE}-wal: {why}; its first {} commit(s) were used",
            scan.commits
        )),
        None => {}
    }
    if scan.commits > 0 {
        std::fs::write(files::side(&copy, "-wal"), &wal_bytes).map_err(|e| copy_io(&wal, e))?;
    }

    let conn = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .and_then(|conn| {
            // The copy is this connection's alone: the WAL index in private memory (no
            // -shm, whose locks SQLite retries for seconds when the pages disagree).
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
            conn.busy_timeout(std::time::Duration::ZERO)?;
            // Check each cell's size as it is read: damaged pages fail, not mislead.
            conn.pragma_update(None, "cell_size_check", true)?;
            Ok(conn)
        })
        .map_err(|e| {
            storage_error(format!(
                "nothing could be salvaged from {}: SQLite cannot open even a repaired copy \
                 ({e}); restore it from a backup",
                source.display()
            ))
        })?;
    let tables: rusqlite::Result<i64> = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
         AND name IN ('commands', 'dead_letters')",
        [],
        |row| row.get(0),
    );
    match tables {
        Ok(2) => {}
        Ok(_) => {
            return Err(storage_error(format!(
                "nothing could be salvaged from {}: it is not an a3s-lane store (no commands \
                 or dead_letters table)",
                source.display()
            )));
        }
        Err(e) => {
            return Err(storage_error(format!(
                "nothing could be salvaged from {}: its list of tables cannot be read ({e}); \
                 restore it from a backup",
                source.display()
            )));
        }
    }
    let mut unreadable = Vec::new();
    let meta_max: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'max_command_id'",
            [],
            |row| row.get(0),
        )
        .ok();
    // A version 1 store has none of version 2's columns: its commands have no timing
    // and no key; a store older than version 5 has no groups, and one older than 6 only
    // replayable commands.
    let count_columns = |names: &str| -> i64 {
        conn.query_row(
            &format!("SELECT count(*) FROM pragma_table_info('commands') WHERE name IN ({names})"),
            [],
            |row| row.get(0),
        )
        .unwrap_or(0)
    };
    let timing = if count_columns("'not_before', 'start_by', 'idempotency_key'") == 3 {
        "not_before, start_by, idempotency_key"
    } else {
        "NULL, NULL, NULL"
    };
    let group = if count_columns("'group_key'") == 1 {
        "group_key"
    } else {
        "NULL"
    };
    let replayable = if count_columns("'replayable'") == 1 {
        "replayable"
    } else {
        "1"
    };
    let commands_sql = format!(
        "SELECT id, lane_id, command_type, payload, attempts, created_at, {timing}, {group}, \
         {replayable} FROM commands WHERE id >= ?1 ORDER BY id"
    );
    // Finished commands' records: schema version 3 on; recurring schedules: version 4
    // on (an older store has none).
    let has_table = |name: &str| -> bool {
        let count: rusqlite::Result<i64> = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |row| row.get(0),
        );
        matches!(count, Ok(1))
    };
    let (has_finished, has_schedules) = (has_table("finished"), has_table("schedules"));
    let rows = scan_table(
        &conn,
        "commands",
        &commands_sql,
        |row| Ok((row.get(0)?, sqlite::read_command_row(row)?)),
        meta_max,
        &mut unreadable,
    );
    let letters = scan_table(
        &conn,
        "dead_letters",
        "SELECT seq, command_id, command_type, lane_id, error, attempts, failed_at, payload \
         FROM dead_letters WHERE seq >= ?1 ORDER BY seq",
        |row| {
            Ok((
                row.get(0)?,
                (
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<String>>(7)?,
                ),
            ))
        },
        None,
        &mut unreadable,
    );
    let finished_rows = if has_finished {
        scan_table(
            &conn,
            "finished",
            sqlite::SELECT_FINISHED_FROM_ID,
            |row| Ok((row.get(0)?, sqlite::read_finished_row(row)?)),
            meta_max,
            &mut unreadable,
        )
    } else {
        Vec::new()
    };
    let schedule_rows = if has_schedules {
        scan_table(
            &conn,
            "schedules",
            sqlite::SELECT_SCHEDULES_FROM_ROWID,
            |row| Ok((row.get(0)?, sqlite::read_schedule_row(row)?)),
            None,
            &mut unreadable,
        )
    } else {
        Vec::new()
    };
    drop(conn);
    let mut schedules: Vec<ScheduleRow> = Vec::new();
    for row in schedule_rows {
        match row.parse() {
            Ok(_) => schedules.push(row),
            Err(reason) => unreadable.push(UnreadableRows {
                table: "schedules",
                ids: row.rowid.max(0) as u64..=row.rowid.max(0) as u64,
                reason: format!(
                    "schedule {:?} cannot be read back ({reason}): not copied",
                    row.name
                ),
            }),
        }
    }
    let mut kept: Vec<FinishedRow> = Vec::new();
    for row in finished_rows {
        if row.parse().is_some() {
            kept.push(row);
        } else {
            unreadable.push(UnreadableRows {
                table: "finished",
                ids: row.id.max(0) as u64..=row.id.max(0) as u64,
                reason: format!(
                    "its state '{}' is not one a3s-lane keeps: not copied",
                    row.state
                ),
            });
        }
    }

    let mut commands = 0;
    let mut bad_payloads: Vec<(CommandRow, String)> = Vec::new();
    let mut good: Vec<CommandRow> = Vec::new();
    for row in rows {
        match row.parse() {
            Ok(_) => good.push(row),
            Err(reason) => {
                unreadable.push(UnreadableRows {
                    table: "commands",
                    ids: row.id as u64..=row.id as u64,
                    reason: format!(
                        "{} ({reason}): copied as a dead letter that keeps its text",
                        sqlite::UNREADABLE
                    ),
                });
                bad_payloads.push((row, reason));
            }
        }
    }
    let max_id = good
        .iter()
        .map(|r| r.id)
        .chain(bad_payloads.iter().map(|(r, _)| r.id))
        .chain(letters.iter().map(|l| l.0))
        .chain(kept.iter().map(|r| r.id))
        .chain(meta_max)
        .max()
        .unwrap_or(0);
    sqlite::create_with(&new_db, |conn| {
        for letter in &letters {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO dead_letters \
                 (command_id, command_type, lane_id, error, attempts, failed_at, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                letter.0, letter.1, letter.2, letter.3, letter.4, letter.5, letter.6
            ])?;
        }
        for row in &good {
            sqlite::insert_command_row(conn, row)?;
            commands += 1;
        }
        for (row, reason) in &bad_payloads {
            sqlite::insert_unreadable(conn, row, reason)?;
        }
        for row in &kept {
            sqlite::insert_finished_row(conn, row)?;
        }
        for row in &schedules {
            sqlite::insert_schedule_row(conn, row)?;
        }
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'max_command_id'",
            [max_id],
        )?;
        Ok(())
    })?;
    let dead_letters = Connection::open_with_flags(&new_db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|conn| {
            conn.query_row("SELECT count(*) FROM dead_letters", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map_err(|e| storage_error(format!("cannot read back {}: {e}", new_db.display())))?
        as usize;
    Ok(SalvageReport {
        new_store: new_db,
        commands,
        dead_letters,
        finished: kept.len(),
        schedules: schedules.len(),
        unreadable,
        notes,
    })
}

/// Refuses a store that a newer a3s-lane wrote (its header intact enough to say so): its
/// schema may have columns this version would drop.
fn refuse_newer(source: &Path) -> Result<()> {
    let dir = source.parent().unwrap_or(Path::new("."));
    let (bytes, _) = files::read_db_header(source)
        .map_err(|e| files::io_error(source, dir, "reading its header", &e))?;
    if bytes.len() < 72 || bytes[68..72] != sqlite::APPLICATION_ID.to_be_bytes() {
        return Ok(());
    }
    let version = i32::from_be_bytes([bytes[60], bytes[61], bytes[62], bytes[63]]);
    if version <= sqlite::SCHEMA_VERSION {
        return Ok(());
    }
    Err(storage_error(format!(
        "{} was written by a newer a3s-lane (schema version {version}; this one reads \
         versions {} to {}): salvage it with that version, so that nothing it stores is \
         dropped; it was left untouched",
        source.display(),
        sqlite::OLDEST_SCHEMA_VERSION,
        sqlite::SCHEMA_VERSION
    )))
}

/// The new store's database path: `new_dir` (created if missing, its parent must exist)
/// must not hold a store already, nor be the damaged store's directory.
fn prepare_target(damaged_dir: &Path, new_dir: &Path) -> Result<PathBuf> {
    if !new_dir.exists() {
        let parent = new_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(storage_error(format!(
                "cannot create {}: its parent {} does not exist",
                new_dir.display(),
                parent.display()
            )));
        }
        std::fs::create_dir(new_dir)
            .map_err(|e| files::io_error(new_dir, parent, "creating it", &e))?;
    }
    let canonical = |dir: &Path| {
        dir.canonicalize()
            .map_err(|e| storage_error(format!("cannot resolve {}: {e}", dir.display())))
    };
    let new_dir = canonical(new_dir)?;
    if new_dir == canonical(damaged_dir)? {
        return Err(storage_error(format!(
            "salvage needs a new directory, not the damaged store's own ({})",
            new_dir.display()
        )));
    }
    let new_db = new_dir.join(LOCAL_STORAGE_FILE);
    let existing: Vec<String> = std::iter::once(new_db.clone())
        .chain(files::SIDE_SUFFIXES.iter().map(|s| files::side(&new_db, s)))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(storage_error(format!(
            "{} already holds a store ({}); salvage into an empty directory",
            new_dir.display(),
            existing.join(", ")
        )));
    }
    Ok(new_db)
}

/// Makes the copy's header readable by SQLite if it is damaged; returns the page size.
fn repair_header(copy: &Path, wal: &[u8], notes: &mut Vec<String>) -> Result<u32> {
    let io = |e: std::io::Error| storage_error(format!("cannot repair {}: {e}", copy.display()));
    let mut bytes = std::fs::read(copy).map_err(io)?;
    let wal_page_size = (wal.len() >= 12)
        .then(|| u32::from_be_bytes([wal[8], wal[9], wal[10], wal[11]]))
        .filter(|size| (512..=65_536).contains(size) && size.is_power_of_two());
    let header_page_size = (bytes.len() >= 18)
        .then(|| match u16::from_be_bytes([bytes[16], bytes[17]]) {
            1 => 65_536,
            n => u32::from(n),
        })
        .filter(|size| (512..=65_536).contains(size) && size.is_power_of_two());
    let page_size = header_page_size.or(wal_page_size).unwrap_or(4096);
    if bytes.len() < page_size as usize {
        return Err(storage_error(format!(
            "nothing could be salvaged from {}: it is {} bytes long, less than one page; \
             restore it from a backup",
            copy.display(),
            bytes.len()
        )));
    }
    let mut repaired = Vec::new();
    if &bytes[..16] != files::SQLITE_MAGIC {
        bytes[..16].copy_from_slice(files::SQLITE_MAGIC);
        repaired.push("its magic string");
    }
    if header_page_size != Some(page_size) {
        let field = if page_size == 65_536 {
            1
        } else {
            page_size as u16
        };
        bytes[16..18].copy_from_slice(&field.to_be_bytes());
        repaired.push("its page size");
    }
    let format = if wal.is_empty() { 1 } else { 2 };
    if !matches!(bytes[18], 1 | 2) || bytes[18] != bytes[19] {
        bytes[18] = format;
        bytes[19] = format;
        repaired.push("its file format");
    }
    if bytes[21..24] != [64, 32, 32] {
        bytes[21..24].copy_from_slice(&[64, 32, 32]);
        repaired.push("its payload fractions");
    }
    let version = i32::from_be_bytes([bytes[60], bytes[61], bytes[62], bytes[63]]);
    // The schema version only labels the copy (the columns read are looked up), but one
    // no a3s-lane writes is damage.
    if !sqlite::readable_version(version) {
        bytes[60..64].copy_from_slice(&sqlite::SCHEMA_VERSION.to_be_bytes());
        repaired.push("its schema version");
    }
    // Fields every a3s-lane store has the same value in (no reserved bytes per page,
    // schema format 4, UTF-8, no auto-vacuum, its application id).
    let fixed: [(usize, &[u8], &str); 6] = [
        (20, &[0], "its reserved space"),
        (44, &4u32.to_be_bytes(), "its schema format"),
        (52, &0u32.to_be_bytes(), "its auto-vacuum field"),
        (56, &1u32.to_be_bytes(), "its text encoding"),
        (64, &0u32.to_be_bytes(), "its incremental-vacuum field"),
        (
            68,
            &sqlite::APPLICATION_ID.to_be_bytes(),
            "its application id",
        ),
    ];
    for (at, value, name) in fixed {
        if &bytes[at..at + value.len()] != value {
            bytes[at..at + value.len()].copy_from_slice(value);
            repaired.push(name);
        }
    }
    if bytes[72..92].iter().any(|&b| b != 0) {
        bytes[72..92].fill(0);
        repaired.push("its reserved header bytes");
    }
    let file_pages = (bytes.len() / page_size as usize) as u32;
    let freelist =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if freelist(32) > file_pages || freelist(36) > file_pages {
        // Freed pages are then never reused; reading the copy does not need them.
        bytes[32..40].fill(0);
        repaired.push("its free-page list");
    }
    let whole = bytes.len() / page_size as usize * page_size as usize;
    if whole != bytes.len() {
        notes.push(format!(
            "{LOCAL_STORAGE_FILE} was cut short ({} bytes, not a whole number of pages); its \
             last partial page was dropped",
            bytes.len()
        ));
        bytes.truncate(whole);
    }
    // A size in the header beyond the file's end makes SQLite refuse the file; marking
    // that size stale makes it use the file's size instead.
    let header_pages = u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
    if header_pages as usize > whole / page_size as usize && wal.is_empty() {
        bytes[92] ^= 0xff;
        notes.push(format!(
            "{LOCAL_STORAGE_FILE} was truncated: its header counts {header_pages} pages, the \
             file has {}",
            whole / page_size as usize
        ));
    }
    if !repaired.is_empty() {
        notes.push(format!(
            "the header of {LOCAL_STORAGE_FILE} was damaged; {} repaired on the copy",
            repaired.join(", ")
        ));
    }
    std::fs::write(copy, &bytes).map_err(io)?;
    Ok(page_size)
}

/// Reads every row of a table that can be read, in key order. A row that fails to
/// decode is listed and skipped; where the table's pages cannot be read, the scan jumps
/// ahead (1, 2, 4, … keys) until it finds readable rows again, and lists the keys it
/// jumped over.
fn scan_table<T>(
    conn: &Connection,
    table: &'static str,
    sql: &str,
    decode: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<(i64, T)>,
    known_max: Option<i64>,
    unreadable: &mut Vec<UnreadableRows>,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut next = i64::MIN;
    let mut queries = 0;
    let gap = |from: i64, to: i64, reason: String| UnreadableRows {
        table,
        ids: from.max(0) as u64..=to.max(0) as u64,
        reason,
    };
    loop {
        queries += 1;
        let failure = match read_from(conn, sql, table, &decode, &mut out, &mut next, unreadable) {
            Ok(()) => return out,
            Err(e) => e,
        };
        // Decoding failures are reported inside read_from; this is a page SQLite cannot
        // read: find the next key past it that can be read.
        let from = next;
        let mut step: i64 = 1;
        let resumed = loop {
            queries += 1;
            if queries > MAX_QUERIES {
                break None;
            }
            let Some(probe) = from.checked_add(step) else {
                break None;
            };
            let first: rusqlite::Result<Option<i64>> = conn.prepare(sql).and_then(|mut s| {
                let mut rows = s.query([probe])?;
                rows.next()?.map(|row| row.get(0)).transpose()
            });
            match first {
                Ok(Some(key)) if key >= probe => break Some(key),
                Ok(Some(_)) => step = step.saturating_mul(2),
                Ok(None) => break None,
                Err(_) => step = step.saturating_mul(2),
            }
        };
        match resumed {
            Some(key) => {
                unreadable.push(gap(
                    from,
                    key - 1,
                    format!("on pages SQLite cannot read ({failure}): not copied"),
                ));
                next = key;
            }
            None => {
                unreadable.push(gap(
                    from,
                    known_max.unwrap_or(from).max(from),
                    format!(
                        "on pages SQLite cannot read ({failure}), to the end of the table: \
                         not copied"
                    ),
                ));
                return out;
            }
        }
    }
}

/// How many queries a scan may spend looking past damaged pages before it reports the
/// rest of the table unreadable (bounds the time salvage takes on a badly damaged file).
const MAX_QUERIES: usize = 20_000;

/// How many rows already read a scan may meet in a row before it gives up on the pages.
const MAX_ROWS_BACK: usize = 100_000;

/// Reads rows from key `next` on until the end or an error SQLite reports; `next` is left
/// just past the last row read.
fn read_from<T>(
    conn: &Connection,
    sql: &str,
    table: &'static str,
    decode: &impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<(i64, T)>,
    out: &mut Vec<T>,
    next: &mut i64,
    unreadable: &mut Vec<UnreadableRows>,
) -> rusqlite::Result<()> {
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query([*next])?;
    let mut skipped = 0;
    while let Some(row) = rows.next()? {
        let key: i64 = row.get(0)?;
        // Damaged pages can make SQLite go back to rows already read: each is read once,
        // and the scan only moves forward.
        if key < *next {
            skipped += 1;
            if skipped > MAX_ROWS_BACK {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some("the table's pages lead back to rows already read".into()),
                ));
            }
            continue;
        }
        skipped = 0;
        match decode(row) {
            Ok((_, value)) => out.push(value),
            Err(e) => unreadable.push(UnreadableRows {
                table,
                ids: key.max(0) as u64..=key.max(0) as u64,
                reason: format!("its columns cannot be read ({e}): not copied"),
            }),
        }
        match key.checked_add(1) {
            Some(after) => *next = after,
            None => return Ok(()),
        }
    }
    Ok(())
}
