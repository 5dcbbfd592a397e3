//! The token bucket, as a generic cell rate algorithm: exact integer arithmetic, so
//! fractional refill is kept and the next permit's instant is exact.

use std::time::Duration;

use crate::policy::Admission;
use tokio::time::Instant;

/// A token bucket lane limiter: `burst` permits, one more every `period / rate`.
///
/// It stores one number, the theoretical arrival time of the next permit, in units of
/// `1 / rate` nanoseconds so that `period / rate` never rounds.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    origin: Option<Instant>,
    /// Theoretical arrival time, in nanoseconds since `origin` times `rate`.
    tat: u128,
    rate: u128,
    /// One permit's spacing, scaled: `period` in nanoseconds.
    spacing: u128,
    /// How far ahead of now the arrival time may run: `(burst - 1)` spacings.
    tolerance: u128,
}

impl TokenBucket {
    /// A full bucket. Only built from a validated [`RateLimitConfig`](crate::RateLimitConfig),
    /// so `rate`, `period` and `burst` are non-zero.
    pub(crate) fn new(rate: u32, period: Duration, burst: u32) -> Self {
        let spacing = period.as_nanos();
        Self {
            origin: None,
            tat: 0,
            rate: u128::from(rate.max(1)),
            spacing,
            tolerance: spacing * u128::from(burst.saturating_sub(1)),
        }
    }
}

impl Admission for TokenBucket {
    fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
        let origin = *self.origin.get_or_insert(now);
        let now_scaled = now.saturating_duration_since(origin).as_nanos() * self.rate;
        let tat = self.tat.max(now_scaled);
        if tat - now_scaled > self.tolerance {
            let due_scaled = tat - self.tolerance;
            let due_nanos = due_scaled.div_ceil(self.rate);
            return Err(after(origin, due_nanos).unwrap_or_else(|| super::far_after(now)));
        }
        self.tat = tat + self.spacing;
        Ok(())
    }
}

/// `origin` plus `nanos`, if the clock can hold it.
fn after(origin: Instant, nanos: u128) -> Option<Instant> {
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    origin.checked_add(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(bucket: &mut TokenBucket, at: Instant) -> Result<(), Duration> {
        bucket.try_acquire(at).map_err(|due| due - at)
    }

    #[test]
    fn a_full_bucket_admits_a_burst_then_one_per_spacing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, Duration::from_secs(1), 10);
        for _ in 0..10 {
            assert_eq!(starts(&mut bucket, t0), Ok(()));
        }
        assert_eq!(starts(&mut bucket, t0), Err(Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(starts(&mut bucket, t1), Ok(()));
        assert_eq!(starts(&mut bucket, t1), Err(Duration::from_millis(100)));
    }

    #[test]
    fn fractional_refill_is_kept() {
        // 3 per second: permits every 333.33 ms; after one second exactly 3 are back.
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, Duration::from_secs(1), 3);
        for _ in 0..3 {
            bucket.try_acquire(t0).unwrap();
        }
        let due = bucket.try_acquire(t0).unwrap_err();
        assert_eq!(due - t0, Duration::from_nanos(333_333_334));
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..3 {
            bucket.try_acquire(t1).unwrap();
        }
        assert!(bucket.try_acquire(t1).is_err());
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_its_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(2, Duration::from_secs(1), 2);
        bucket.try_acquire(t0).unwrap();
        let later = t0 + Duration::from_secs(60);
        bucket.try_acquire(later).unwrap();
        bucket.try_acquire(later).unwrap();
        assert!(bucket.try_acquire(later).is_err());
    }

    #[test]
    fn a_period_past_the_clock_names_a_far_instant_instead_of_panicking() {
        let t0 = Instant::now();
        for (rate, burst) in [(1, 1), (u32::MAX, u32::MAX), (1, u32::MAX), (u32::MAX, 1)] {
            let mut bucket = TokenBucket::new(rate, Duration::MAX, burst);
            let mut refused = None;
            for _ in 0..3 {
                if let Err(due) = bucket.try_acquire(t0) {
                    refused = Some(due);
                    break;
                }
            }
            if let Some(due) = refused {
                assert!(due > t0);
            }
        }
    }
}
