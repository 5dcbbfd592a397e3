//! Dead letters: commands that failed for good, kept for inspection and re-driving.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::command::CommandId;
use crate::journal::Journal;
use crate::storage::StorageOp;

// Defined with the other stored types, which must not depend on this module.
pub use crate::storage::record::DeadLetter;

/// A bounded list of dead letters; when full, the oldest is evicted. Cheap to clone (shared).
///
/// Given to a queue that has storage, every change made through it (a push, an eviction,
/// `pop`, `take`, `clear`) is also written to that storage, so the dead letters reloaded
/// on the next start are the ones listed here.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    inner: Arc<DlqInner>,
}

#[derive(Debug)]
struct DlqInner {
    max_size: usize,
    letters: Mutex<VecDeque<DeadLetter>>,
    /// The journal of the storage-backed queue this list belongs to, if any.
    journal: OnceLock<Journal>,
}

impl DeadLetterQueue {
    /// A queue that keeps at most `max_size` letters (oldest evicted first).
    pub fn new(max_size: usize) -> Self {
        Self {
            inner: Arc::new(DlqInner {
                max_size,
                letters: Mutex::new(VecDeque::new()),
                journal: OnceLock::new(),
            }),
        }
    }

    /// The capacity given to [`DeadLetterQueue::new`].
    pub fn max_size(&self) -> usize {
        self.inner.max_size
    }

    /// Adds a letter; returns the one evicted to make room, if any.
    pub fn push_sync(&self, letter: DeadLetter) -> Option<DeadLetter> {
        let journal = self.inner.journal.get();
        if let Some(journal) = journal
            && self.inner.max_size > 0
        {
            journal.write(StorageOp::SaveDeadLetter(letter.clone()));
        }
        let evicted = self.restore(letter);
        if let (Some(journal), Some(evicted)) = (journal, &evicted) {
            journal.write(StorageOp::RemoveDeadLetter(evicted.command_id));
        }
        evicted
    }

    /// Adds a letter that cannot be redriven (no payload: a record of a command that
    /// could not be replayed after a crash) without pushing out one that can: when the
    /// list is full, the oldest letter without a payload makes room, and with none, this
    /// one is not kept. Returns whether it was kept.
    pub(crate) fn push_record(&self, letter: DeadLetter) -> bool {
        debug_assert!(letter.payload.is_none());
        let evicted = {
            let mut letters = self.inner.letters.lock();
            if self.inner.max_size == 0 {
                return false;
            }
            let evicted = if letters.len() >= self.inner.max_size {
                let Some(index) = letters.iter().position(|l| l.payload.is_none()) else {
                    return false;
                };
                letters.remove(index)
            } else {
                None
            };
            letters.push_back(letter.clone());
            evicted
        };
        if let Some(journal) = self.inner.journal.get() {
            journal.write(StorageOp::SaveDeadLetter(letter));
            if let Some(evicted) = evicted {
                journal.write(StorageOp::RemoveDeadLetter(evicted.command_id));
            }
        }
        true
    }

    /// Adds a letter without writing it to storage (it came from there).
    pub(crate) fn restore(&self, letter: DeadLetter) -> Option<DeadLetter> {
        if self.inner.max_size == 0 {
            return Some(letter);
        }
        let mut letters = self.inner.letters.lock();
        let evicted = if letters.len() >= self.inner.max_size {
            letters.pop_front()
        } else {
            None
        };
        letters.push_back(letter);
        evicted
    }

    /// From now on, writes every change to `journal` (the first call wins).
    pub(crate) fn attach_journal(&self, journal: Journal) {
        let _ = self.inner.journal.set(journal);
    }

    fn forget_durably(&self, command_id: CommandId) {
        if let Some(journal) = self.inner.journal.get() {
            journal.write(StorageOp::RemoveDeadLetter(command_id));
        }
    }

    /// Adds a letter, evicting the oldest when full.
    pub async fn push(&self, letter: DeadLetter) {
        self.push_sync(letter);
    }

    /// Removes and returns the oldest letter.
    pub async fn pop(&self) -> Option<DeadLetter> {
        let letter = self.inner.letters.lock().pop_front()?;
        self.forget_durably(letter.command_id);
        Some(letter)
    }

    /// Removes and returns the letter for `command_id`, if present.
    pub fn take(&self, command_id: CommandId) -> Option<DeadLetter> {
        let (_, letter) = self.take_quietly(command_id)?;
        self.forget_durably(command_id);
        Some(letter)
    }

    /// Removes a letter from the list only, returning its position for [`Self::put_back`].
    pub(crate) fn take_quietly(&self, command_id: CommandId) -> Option<(usize, DeadLetter)> {
        let mut letters = self.inner.letters.lock();
        let index = letters.iter().position(|l| l.command_id == command_id)?;
        letters.remove(index).map(|letter| (index, letter))
    }

    /// Undoes [`Self::take_quietly`].
    pub(crate) fn put_back(&self, index: usize, letter: DeadLetter) {
        let mut letters = self.inner.letters.lock();
        let index = index.min(letters.len());
        letters.insert(index, letter);
    }

    /// All letters, oldest first.
    pub async fn list(&self) -> Vec<DeadLetter> {
        self.inner.letters.lock().iter().cloned().collect()
    }

    /// A lane's letters, newest first, after skipping `skip`, at most `limit`.
    pub fn list_lane(&self, lane: &str, skip: usize, limit: usize) -> Vec<DeadLetter> {
        self.inner
            .letters
            .lock()
            .iter()
            .rev()
            .filter(|letter| letter.lane_id == lane)
            .skip(skip)
            .take(limit)
            .cloned()
            .collect()
    }

    /// The letter of `command_id`, if kept.
    pub fn get(&self, command_id: CommandId) -> Option<DeadLetter> {
        self.inner
            .letters
            .lock()
            .iter()
            .find(|letter| letter.command_id == command_id)
            .cloned()
    }

    /// Removes every letter and says how many there were.
    pub fn purge(&self) -> usize {
        let count = {
            let mut letters = self.inner.letters.lock();
            let count = letters.len();
            letters.clear();
            count
        };
        if let Some(journal) = self.inner.journal.get() {
            journal.write(StorageOp::ClearDeadLetters);
        }
        count
    }

    /// Removes every letter.
    pub async fn clear(&self) {
        self.inner.letters.lock().clear();
        if let Some(journal) = self.inner.journal.get() {
            journal.write(StorageOp::ClearDeadLetters);
        }
    }

    /// How many letters are kept.
    pub async fn len(&self) -> usize {
        self.inner.letters.lock().len()
    }

    /// Whether no letter is kept.
    pub async fn is_empty(&self) -> bool {
        self.inner.letters.lock().is_empty()
    }
}
