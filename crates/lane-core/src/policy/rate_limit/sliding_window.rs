//! The sliding window log: exact, and memory proportional to the limit.

use std::collections::VecDeque;
use std::time::Duration;

use crate::policy::Admission;
use tokio::time::Instant;

/// A sliding window lane limiter: at most `limit` starts within any `window`.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    limit: usize,
    window: Duration,
    /// Start instants of the last `limit` starts, oldest first.
    starts: VecDeque<Instant>,
}

impl SlidingWindow {
    /// An empty window. Only built from a validated [`RateLimitConfig`](crate::RateLimitConfig),
    /// so `limit` and `window` are non-zero.
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window,
            starts: VecDeque::new(),
        }
    }
}

impl Admission for SlidingWindow {
    fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
        while let Some(&oldest) = self.starts.front() {
            // A window end past what the clock holds never comes.
            if oldest
                .checked_add(self.window)
                .is_some_and(|end| end <= now)
            {
                self.starts.pop_front();
            } else {
                break;
            }
        }
        if self.starts.len() < self.limit {
            self.starts.push_back(now);
            return Ok(());
        }
        // Full: the oldest start leaves the window first.
        Err(self.starts[0]
            .checked_add(self.window)
            .unwrap_or_else(|| super::far_after(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_limit_per_window_and_names_when_the_oldest_leaves() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(2, Duration::from_secs(1));
        window.try_acquire(t0).unwrap();
        let t1 = t0 + Duration::from_millis(300);
        window.try_acquire(t1).unwrap();
        assert_eq!(
            window.try_acquire(t1),
            Err(t0 + Duration::from_secs(1)),
            "the first start leaves the window after one second"
        );
        window.try_acquire(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(
            window.try_acquire(t0 + Duration::from_secs(1)),
            Err(t1 + Duration::from_secs(1))
        );
    }

    #[test]
    fn a_window_past_the_clock_names_a_far_instant_instead_of_panicking() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(1, Duration::MAX);
        window.try_acquire(t0).unwrap();
        let due = window.try_acquire(t0).unwrap_err();
        assert!(due > t0);
        assert!(window.try_acquire(t0 + Duration::from_secs(3600)).is_err());
    }
}
