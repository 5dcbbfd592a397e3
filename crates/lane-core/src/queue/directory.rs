//! Lane names readable without the state lock.

use std::sync::{Arc, OnceLock};

use super::CommandQueue;
use crate::scheduler::{LaneIdx, State};

impl CommandQueue {
    /// A lane's name: borrowed from the directory, or cloned from `state` for lanes
    /// beyond the directory.
    pub(super) fn lane_name<'a>(&'a self, state: &State, lane: LaneIdx) -> LaneName<'a> {
        match self.directory.as_ref().and_then(|d| d.name(lane)) {
            Some(name) => LaneName::Borrowed(name),
            None => LaneName::Owned(state.lane(lane).id.clone()),
        }
    }

    /// [`CommandQueue::lane_name`] without the state lock held: the lock is taken only
    /// for lanes beyond the directory.
    pub(super) fn lane_name_unlocked(&self, lane: LaneIdx) -> LaneName<'_> {
        match self.directory.as_ref().and_then(|d| d.name(lane)) {
            Some(name) => LaneName::Borrowed(name),
            None => LaneName::Owned(self.state.lock().lane(lane).id.clone()),
        }
    }
}

/// A lane name, borrowed when possible.
pub(super) enum LaneName<'a> {
    Borrowed(&'a str),
    Owned(Arc<str>),
}

impl std::ops::Deref for LaneName<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            LaneName::Borrowed(name) => name,
            LaneName::Owned(name) => name,
        }
    }
}

/// Lanes per directory chunk, and chunks: the first 4096 lanes are in the directory.
const DIRECTORY_CHUNK: usize = 64;
const DIRECTORY_CHUNKS: usize = 64;

/// Lane names, readable without the state lock. Lanes are only ever added, so entries are
/// written once (under the state lock).
pub(super) struct LaneDirectory {
    chunks: [OnceLock<Box<[DirectoryEntry]>>; DIRECTORY_CHUNKS],
}

/// One lane's entry.
#[derive(Default)]
struct DirectoryEntry {
    name: OnceLock<Arc<str>>,
}

impl Default for LaneDirectory {
    fn default() -> Self {
        Self {
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl LaneDirectory {
    fn entry(&self, lane: usize) -> Option<&DirectoryEntry> {
        self.chunks
            .get(lane / DIRECTORY_CHUNK)?
            .get()
            .map(|chunk| &chunk[lane % DIRECTORY_CHUNK])
    }

    pub(super) fn register(&self, lane: usize, name: Arc<str>) {
        let Some(chunk) = self.chunks.get(lane / DIRECTORY_CHUNK) else {
            return;
        };
        let chunk = chunk.get_or_init(|| {
            (0..DIRECTORY_CHUNK)
                .map(|_| DirectoryEntry::default())
                .collect()
        });
        let _ = chunk[lane % DIRECTORY_CHUNK].name.set(name);
    }

    fn name(&self, lane: LaneIdx) -> Option<&str> {
        self.entry(lane as usize)?.name.get().map(|name| &**name)
    }
}
