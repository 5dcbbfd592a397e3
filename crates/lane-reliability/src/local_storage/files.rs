//! Checks of the store's files made by reading their bytes, before SQLite is allowed to
//! act on them: SQLite silently ignores a WAL whose header is damaged (the store would
//! open empty), stops at the first bad WAL frame (every later commit would be dropped),
//! and rewrites or deletes files when it opens or closes them. Nothing here writes.
//!
//! Formats: <https://www.sqlite.org/fileformat2.html> (the database header and the WAL).

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use lane_core::{LaneError, Result};

/// The first 16 bytes of every SQLite database.
pub(super) const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Size of the database header at the start of page 1.
const DB_HEADER_LEN: usize = 100;
/// Size of the WAL header and of each frame header.
const WAL_HEADER_LEN: usize = 32;
const WAL_FRAME_HEADER_LEN: usize = 24;
/// The WAL magic number (the low bit says in which byte order the checksums are summed).
const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_VERSION: u32 = 3_007_000;

/// The side files SQLite may keep next to `lane.db`.
pub(super) const SIDE_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The path of a side file of `db` (`suffix` is one of [`SIDE_SUFFIXES`]).
pub(super) fn side(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the database header says, once it has been found to be an a3s-lane store's.
#[derive(Debug, Clone, Copy)]
pub(super) struct DbHeader {
    pub(super) page_size: u32,
    /// 2 when the file is in WAL mode, 1 in rollback-journal mode.
    pub(super) wal_format: bool,
    pub(super) application_id: i32,
    pub(super) user_version: i32,
}

/// How the header bytes of a file failed to be those of a SQLite database.
#[derive(Debug)]
pub(super) enum HeaderProblem {
    /// Shorter than a database header (`len` bytes).
    TooShort(u64),
    /// The first bytes are not SQLite's.
    NotSqlite,
    /// SQLite's magic, but fields that no SQLite writes.
    Damaged(String),
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses the first bytes of a database file.
pub(super) fn parse_db_header(
    bytes: &[u8],
    len: u64,
) -> std::result::Result<DbHeader, HeaderProblem> {
    if bytes.len() < DB_HEADER_LEN {
        return Err(HeaderProblem::TooShort(len));
    }
    if &bytes[..16] != SQLITE_MAGIC {
        return Err(HeaderProblem::NotSqlite);
    }
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        n => u32::from(n),
    };
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(HeaderProblem::Damaged(format!(
            "its header gives an impossible page size ({page_size})"
        )));
    }
    let (write, read) = (bytes[18], bytes[19]);
    if !matches!(write, 1 | 2) || !matches!(read, 1 | 2) || write != read {
        return Err(HeaderProblem::Damaged(format!(
            "its header gives an unknown file format ({write}/{read})"
        )));
    }
    if bytes[21..24] != [64, 32, 32] {
        return Err(HeaderProblem::Damaged(
            "its header's fixed payload fractions are wrong".into(),
        ));
    }
    if !len.is_multiple_of(u64::from(page_size)) {
        return Err(HeaderProblem::Damaged(format!(
            "its size ({len} bytes) is not a whole number of {page_size}-byte pages: it was \
             truncated or overwritten"
        )));
    }
    Ok(DbHeader {
        page_size,
        wal_format: write == 2,
        application_id: be_u32(bytes, 68) as i32,
        user_version: be_u32(bytes, 60) as i32,
    })
}

/// Reads the database header of `db` (one open, read-only, closed at once).
pub(super) fn read_db_header(db: &Path) -> std::io::Result<(Vec<u8>, u64)> {
    let file = std::fs::File::open(db)?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(DB_HEADER_LEN);
    file.take(DB_HEADER_LEN as u64).read_to_end(&mut bytes)?;
    Ok((bytes, len))
}

/// What a WAL holds, as far as it can be trusted.
#[derive(Debug, Default)]
pub(super) struct WalScan {
    /// Pages written by the committed transactions.
    pub(super) pages: HashSet<u32>,
    /// The database size in pages after the last committed transaction.
    pub(super) db_pages: Option<u32>,
    /// Committed transactions found.
    pub(super) commits: usize,
    /// Why the WAL cannot be trusted, if it cannot.
    pub(super) damage: Option<String>,
}

/// Sums `data` into the running WAL checksum, in the byte order the WAL header chose.
fn checksum(big_endian: bool, data: &[u8], (mut s0, mut s1): (u32, u32)) -> (u32, u32) {
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    for pair in data.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// Checks a WAL's bytes against the database's page size.
///
/// A torn tail — frames after the last commit that are incomplete or fail their checksum,
/// with no complete commit after them — is what an interrupted commit leaves, and SQLite
/// drops it by design (that commit was never acknowledged). Damage is anything else: a
/// header that is not a WAL's, or a bad frame followed by frames of later commits that
/// SQLite would silently drop with it.
pub(super) fn scan_wal(bytes: &[u8], page_size: u32) -> WalScan {
    let mut scan = WalScan::default();
    let damaged = |why: String| WalScan {
        damage: Some(why),
        ..WalScan::default()
    };
    if bytes.is_empty() {
        return scan;
    }
    if bytes.len() < WAL_HEADER_LEN {
        return damaged(format!(
            "it is {} bytes long, shorter than a WAL header",
            bytes.len()
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic & !1 != WAL_MAGIC {
        return damaged("its header is not a WAL header (wrong magic number)".into());
    }
    let big_endian = magic & 1 == 1;
    if be_u32(bytes, 4) != WAL_VERSION {
        return damaged(format!(
            "its header gives an unknown WAL format ({})",
            be_u32(bytes, 4)
        ));
    }
    let header_sum = checksum(big_endian, &bytes[..24], (0, 0));
    if header_sum != (be_u32(bytes, 24), be_u32(bytes, 28)) {
        return damaged("its header fails its checksum".into());
    }
    if be_u32(bytes, 8) != page_size {
        return damaged(format!(
            "its page size ({}) is not the database's ({page_size}): it belongs to another \
             database",
            be_u32(bytes, 8)
        ));
    }
    let salts = (be_u32(bytes, 16), be_u32(bytes, 20));
    let frame_len = WAL_FRAME_HEADER_LEN + page_size as usize;
    let frames: Vec<&[u8]> = bytes[WAL_HEADER_LEN..].chunks_exact(frame_len).collect();
    let stored_sum = |frame: &[u8]| (be_u32(frame, 16), be_u32(frame, 20));
    let sum_of = |frame: &[u8], seed| {
        let sum = checksum(big_endian, &frame[..8], seed);
        checksum(big_endian, &frame[WAL_FRAME_HEADER_LEN..], sum)
    };
    let ours = |frame: &[u8]| (be_u32(frame, 8), be_u32(frame, 12)) == salts;

    // The chain SQLite itself follows: each frame's checksum continues the previous one.
    let mut sum = header_sum;
    let mut pending = Vec::new();
    let mut broken_at = frames.len();
    for (i, frame) in frames.iter().enumerate() {
        if !ours(frame) || sum_of(frame, sum) != stored_sum(frame) {
            broken_at = i;
            break;
        }
        sum = stored_sum(frame);
        pending.push(be_u32(frame, 0));
        let commit_size = be_u32(frame, 4);
        if commit_size != 0 {
            scan.pages.extend(pending.drain(..));
            scan.db_pages = Some(commit_size);
            scan.commits += 1;
        }
    }
    // After a break, look for frames of this WAL that are intact on their own (checked
    // against the stored checksum of the frame before them). Frames after a complete
    // later commit prove that the break is not an interrupted last commit.
    let mut later_commits = 0;
    let mut frame_after_commit = false;
    for i in broken_at.saturating_add(1)..frames.len() {
        let frame = frames[i];
        if !ours(frame) || sum_of(frame, stored_sum(frames[i - 1])) != stored_sum(frame) {
            continue;
        }
        if later_commits > 0 {
            frame_after_commit = true;
        }
        if be_u32(frame, 4) != 0 {
            later_commits += 1;
        }
    }
    if later_commits >= 2 || frame_after_commit {
        scan.damage = Some(format!(
            "frame {} of {} fails its checksum although {later_commits} complete commit(s) \
             follow it: SQLite would silently drop every commit from there on",
            broken_at + 1,
            frames.len()
        ));
    }
    scan
}

/// The error for a store whose files are damaged: what, and what the user can do.
/// `what` is a sentence without its final full stop.
pub(super) fn damaged(dir: &Path, what: String) -> LaneError {
    LaneError::Storage(format!(
        "the store in {} is damaged: {what}. It was not opened and no file was changed, so \
         that no command is silently lost: restore it from a backup, or copy \
         every readable command into a new store with LocalStorage::salvage(\"{0}\", \
         <new directory>)",
        dir.display()
    ))
}

/// Whether an I/O error means this process may not write there (rather than a failing disk).
pub(super) fn is_permission(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// The error for a store this process may not write.
pub(super) fn not_writable(path: &Path, dir: &Path, error: &std::io::Error) -> LaneError {
    let why = if error.kind() == std::io::ErrorKind::ReadOnlyFilesystem {
        "read-only file system"
    } else {
        "permission denied"
    };
    LaneError::Storage(format!(
        "{} is not writable by this process ({why}: {error}): give the user running it write \
         access to {} and the files in it, or choose another directory",
        path.display(),
        dir.display()
    ))
}

/// An I/O error on the store: a permission problem is reported as such, anything else as
/// an I/O error of the disk.
pub(super) fn io_error(path: &Path, dir: &Path, doing: &str, error: &std::io::Error) -> LaneError {
    if is_permission(error) {
        not_writable(path, dir, error)
    } else {
        LaneError::Storage(format!(
            "I/O error on {} while {doing} ({error}); check the disk",
            path.display()
        ))
    }
}

/// Fails with a permission error unless this process may write `db`, its side files and
/// `dir` (where SQLite creates the WAL). Writes nothing: files are opened for writing and
/// closed; the directory is probed with an unnamed temporary file.
pub(super) fn check_writable(db: &Path, dir: &Path) -> Result<()> {
    let mut files = vec![db.to_path_buf()];
    files.extend(SIDE_SUFFIXES.iter().map(|suffix| side(db, suffix)));
    for file in files {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file != db => {}
            Err(e) => return Err(io_error(&file, dir, "opening it for writing", &e)),
        }
    }
    tempfile::tempfile_in(dir)
        .map(drop)
        .map_err(|e| io_error(dir, dir, "creating a file in it", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(page_size: u32, frames: &[(u32, u32)], big_endian: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        let magic = WAL_MAGIC | u32::from(big_endian);
        for word in [magic, WAL_VERSION, page_size, 0, 7, 9] {
            bytes.extend(word.to_be_bytes());
        }
        let mut sum = checksum(big_endian, &bytes, (0, 0));
        bytes.extend(sum.0.to_be_bytes());
        bytes.extend(sum.1.to_be_bytes());
        for &(page, commit) in frames {
            let mut frame = Vec::new();
            for word in [page, commit, 7, 9] {
                frame.extend(word.to_be_bytes());
            }
            let data = vec![page as u8; page_size as usize];
            sum = checksum(big_endian, &frame[..8], sum);
            sum = checksum(big_endian, &data, sum);
            frame.extend(sum.0.to_be_bytes());
            frame.extend(sum.1.to_be_bytes());
            frame.extend(data);
            bytes.extend(frame);
        }
        bytes
    }

    const FRAME: usize = WAL_FRAME_HEADER_LEN + 512;

    #[test]
    fn an_intact_wal_is_read_in_both_byte_orders() {
        for big_endian in [false, true] {
            let scan = scan_wal(&wal(512, &[(1, 0), (2, 3), (3, 4)], big_endian), 512);
            assert!(scan.damage.is_none(), "{:?}", scan.damage);
            assert_eq!(scan.commits, 2);
            assert_eq!(scan.db_pages, Some(4));
            assert_eq!(scan.pages, HashSet::from([1, 2, 3]));
        }
    }

    #[test]
    fn a_torn_last_commit_is_not_damage() {
        let mut bytes = wal(512, &[(1, 2), (2, 0), (3, 3)], false);
        // The last commit's first frame lost its data; its commit frame made it.
        let at = WAL_HEADER_LEN + FRAME + 100;
        bytes[at] ^= 0xff;
        let scan = scan_wal(&bytes, 512);
        assert!(scan.damage.is_none(), "{:?}", scan.damage);
        assert_eq!(scan.commits, 1);
        // A partly written frame at the end.
        let mut bytes = wal(512, &[(1, 2), (2, 3)], false);
        bytes.truncate(bytes.len() - 10);
        let scan = scan_wal(&bytes, 512);
        assert!(scan.damage.is_none(), "{:?}", scan.damage);
        assert_eq!(scan.commits, 1);
    }

    #[test]
    fn a_bad_frame_before_later_commits_is_damage() {
        let mut bytes = wal(512, &[(1, 2), (2, 2), (3, 3), (4, 4)], false);
        bytes[WAL_HEADER_LEN + FRAME + 100] ^= 0xff;
        let scan = scan_wal(&bytes, 512);
        assert!(scan.damage.unwrap().contains("frame 2 of 4"));
    }

    #[test]
    fn a_damaged_header_is_damage() {
        let good = wal(512, &[(1, 2)], false);
        let mut bytes = good.clone();
        bytes[0] = 0;
        assert!(scan_wal(&bytes, 512).damage.unwrap().contains("magic"));
        let mut bytes = good.clone();
        bytes[13] ^= 1;
        assert!(scan_wal(&bytes, 512).damage.unwrap().contains("checksum"));
        assert!(scan_wal(&good, 1024).damage.unwrap().contains("page size"));
        assert!(
            scan_wal(&good[..20], 512)
                .damage
                .unwrap()
                .contains("shorter")
        );
        assert!(scan_wal(&[], 512).damage.is_none());
    }

    #[test]
    fn database_headers_are_classified() {
        let mut header = vec![0u8; 100];
        header[..16].copy_from_slice(SQLITE_MAGIC);
        header[16..18].copy_from_slice(&4096u16.to_be_bytes());
        header[18] = 2;
        header[19] = 2;
        header[21..24].copy_from_slice(&[64, 32, 32]);
        header[68..72].copy_from_slice(&0x4133_534cu32.to_be_bytes());
        let parsed = parse_db_header(&header, 8192).unwrap();
        assert_eq!(parsed.page_size, 4096);
        assert!(parsed.wal_format);
        assert_eq!(parsed.application_id, 0x4133_534c);
        assert!(matches!(
            parse_db_header(&header, 8000),
            Err(HeaderProblem::Damaged(_))
        ));
        assert!(matches!(
            parse_db_header(&header[..50], 50),
            Err(HeaderProblem::TooShort(50))
        ));
        let mut text = header.clone();
        text[..16].copy_from_slice(b"not a database!!");
        assert!(matches!(
            parse_db_header(&text, 8192),
            Err(HeaderProblem::NotSqlite)
        ));
        let mut bad = header;
        bad[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(
            parse_db_header(&bad, 8192),
            Err(HeaderProblem::Damaged(_))
        ));
    }
}
