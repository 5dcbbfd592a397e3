//! The ready set: lanes that can start a command now, indexed by priority level.
//!
//! A 256-bit mask says which levels have candidates; each level is a FIFO of lane
//! indices, rotated after every start so equal-priority lanes take turns. Entries are
//! removed lazily: a lane that stopped being ready is dropped when it reaches the front.
//! Finding the most urgent lane is a scan of four words, whatever the number of lanes.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct ReadyIndex {
    mask: [u64; 4],
    levels: Vec<VecDeque<u32>>,
}

impl ReadyIndex {
    pub(crate) fn with_levels(levels: usize) -> Self {
        debug_assert!(levels <= 256);
        Self {
            mask: [0; 4],
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
        }
    }

    pub(crate) fn push(&mut self, level: u8, lane: u32) {
        let level = usize::from(level);
        self.levels[level].push_back(lane);
        self.mask[level / 64] |= 1 << (level % 64);
    }

    /// The most urgent non-empty level and the lane at its front.
    pub(crate) fn front(&self) -> Option<(u8, u32)> {
        let (word, bits) = self.mask.iter().enumerate().find(|(_, bits)| **bits != 0)?;
        let level = word * 64 + bits.trailing_zeros() as usize;
        let lane = *self.levels[level].front()?;
        Some((level as u8, lane))
    }

    pub(crate) fn pop_front(&mut self, level: u8) -> Option<u32> {
        let index = usize::from(level);
        let lane = self.levels[index].pop_front();
        if self.levels[index].is_empty() {
            self.mask[index / 64] &= !(1 << (index % 64));
        }
        lane
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_is_the_lowest_level_in_fifo_order() {
        let mut index = ReadyIndex::with_levels(200);
        index.push(130, 7);
        index.push(3, 1);
        index.push(3, 2);
        assert_eq!(index.front(), Some((3, 1)));
        assert_eq!(index.pop_front(3), Some(1));
        assert_eq!(index.front(), Some((3, 2)));
        assert_eq!(index.pop_front(3), Some(2));
        assert_eq!(index.front(), Some((130, 7)));
        assert_eq!(index.pop_front(130), Some(7));
        assert_eq!(index.front(), None);
    }
}
