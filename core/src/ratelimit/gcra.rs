//! The generic cell rate algorithm (GCRA) as pure arithmetic on one number per key, the
//! theoretical arrival time (TAT): both store adapters and the tests use these functions, so
//! every limiter decides alike.
//!
//! A rate of `per_second` with a burst of `burst` has an emission interval `T = 1/per_second`
//! and a tolerance `τ = (burst − 1)·T`. A request at `now` is admitted when
//! `max(tat, now) ≤ now + τ`, and then moves the TAT to `max(tat, now) + T`. Times are
//! microseconds since the Unix epoch, so rates like 3/s keep their interval exact enough.

use std::time::Duration;

/// Microseconds in a second.
const MICROS: i64 = 1_000_000;

/// A rate with its burst: what one key may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests admitted at once from a full allowance.
    pub burst: u32,
}

impl Rate {
    /// A rate; `per_second` and `burst` of 0 count as 1 (settings refuse 0 before this).
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: if per_second == 0 { 1 } else { per_second },
            burst: if burst == 0 { 1 } else { burst },
        }
    }

    /// The emission interval `T`, in microseconds (rounded up: never faster than the rate).
    pub const fn interval_us(self) -> i64 {
        (MICROS + self.per_second as i64 - 1) / self.per_second as i64
    }

    /// The tolerance `τ = (burst − 1)·T`, in microseconds.
    pub const fn tolerance_us(self) -> i64 {
        (self.burst as i64 - 1) * self.interval_us()
    }

    /// The latest TAT a request at `now` may find and still be admitted: `now + τ`.
    pub const fn latest(self, now: i64) -> i64 {
        now + self.tolerance_us()
    }

    /// How long an empty allowance takes to refill completely (`burst·T`): the window of the
    /// `RateLimit-Policy` header, whole seconds rounded up.
    pub fn window_secs(self) -> u64 {
        ceil_secs(i64::from(self.burst) * self.interval_us())
    }
}

/// What the limiter answered for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted.
    Allowed {
        /// Requests that could follow at once.
        remaining: u32,
        /// Until the allowance is full again.
        reset: Duration,
    },
    /// Refused: over the limit.
    Denied {
        /// Until one request would be admitted.
        retry_after: Duration,
        /// Until the allowance is full again.
        reset: Duration,
    },
}

impl Decision {
    /// Whether the request was admitted.
    pub const fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }
}

/// Decides a request at `now` against the stored `tat` (absent: a full allowance); the TAT to
/// store if it is admitted.
pub fn decide(rate: Rate, tat: Option<i64>, now: i64) -> (Decision, Option<i64>) {
    let tat = tat.filter(|t| *t >= now).unwrap_or(now);
    let latest = rate.latest(now);
    if tat > latest {
        let decision = Decision::Denied {
            retry_after: micros(tat - latest),
            reset: micros(tat - now),
        };
        return (decision, None);
    }
    let next = tat + rate.interval_us();
    (allowed(rate, next, now), Some(next))
}

/// The decision of a request admitted at `now` that moved the TAT to `next`.
pub fn allowed(rate: Rate, next: i64, now: i64) -> Decision {
    let room = (rate.latest(now) + rate.interval_us() - next).max(0);
    Decision::Allowed {
        remaining: u32::try_from(room / rate.interval_us()).unwrap_or(u32::MAX),
        reset: micros(next - now),
    }
}

/// The decision of a request at `now` that found `tat` beyond the tolerance.
pub fn denied(rate: Rate, tat: i64, now: i64) -> Decision {
    decide(rate, Some(tat), now).0
}

/// Microseconds since the epoch of a millisecond timestamp.
pub const fn micros_of_millis(millis: i64) -> i64 {
    millis.saturating_mul(1000)
}

/// Whole seconds of `us` microseconds, rounded up (`Retry-After`, the store's TTL).
pub fn ceil_secs(us: i64) -> u64 {
    u64::try_from((us.max(0) + MICROS - 1) / MICROS).unwrap_or(0)
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000;

    /// Runs requests at the given offsets (µs) from `NOW`; the decisions.
    fn run(rate: Rate, offsets: &[i64]) -> Vec<Decision> {
        let mut tat = None;
        offsets
            .iter()
            .map(|offset| {
                let (decision, next) = decide(rate, tat, NOW + offset);
                tat = next.or(tat);
                decision
            })
            .collect()
    }

    #[test]
    fn a_full_allowance_admits_exactly_the_burst_at_once_then_refuses() {
        let rate = Rate::new(5, 10);

        let decisions = run(rate, &[0; 12]);

        let admitted = decisions.iter().filter(|d| d.is_allowed()).count();
        assert_eq!(admitted, 10);
        assert_eq!(
            decisions[0],
            Decision::Allowed {
                remaining: 9,
                reset: Duration::from_millis(200)
            }
        );
        assert_eq!(
            decisions[9],
            Decision::Allowed {
                remaining: 0,
                reset: Duration::from_secs(2)
            }
        );
        assert_eq!(
            decisions[10],
            Decision::Denied {
                retry_after: Duration::from_millis(200),
                reset: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn the_retry_after_of_a_refusal_is_exactly_when_the_next_request_is_admitted() {
        let rate = Rate::new(2, 3);
        let mut offsets = vec![0; 4];
        offsets.push(499_999);
        offsets.push(500_000);

        let decisions = run(rate, &offsets);

        let Decision::Denied { retry_after, .. } = decisions[3] else {
            panic!("{decisions:?}");
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert!(!decisions[4].is_allowed(), "a microsecond early");
        assert!(decisions[5].is_allowed(), "at the retry time");
    }

    #[test]
    fn a_steady_caller_at_the_rate_is_never_refused_and_a_faster_one_gets_the_rate() {
        let rate = Rate::new(10, 1);
        let steady: Vec<i64> = (0..100).map(|i| i * 100_000).collect();
        let twice: Vec<i64> = (0..200).map(|i| i * 50_000).collect();

        assert!(run(rate, &steady).iter().all(Decision::is_allowed));
        let admitted = run(rate, &twice).iter().filter(|d| d.is_allowed()).count();
        assert_eq!(admitted, 100);
    }

    #[test]
    fn there_is_no_window_boundary_burst() {
        // A fixed window of 10 per second admits 10 at 0.999 s and 10 more at 1.0 s; GCRA
        // admits the burst once, then one per interval.
        let rate = Rate::new(10, 10);
        let mut offsets = vec![999_000; 10];
        offsets.extend([1_000_000; 10]);

        let admitted = run(rate, &offsets)
            .iter()
            .filter(|d| d.is_allowed())
            .count();

        assert_eq!(admitted, 10);
    }

    #[test]
    fn an_allowance_refills_completely_after_the_window() {
        let rate = Rate::new(1, 5);
        let mut offsets = vec![0; 6];
        offsets.extend([5_000_000; 5]);

        let decisions = run(rate, &offsets);

        assert!(!decisions[5].is_allowed());
        assert!(decisions[6..].iter().all(Decision::is_allowed));
        assert_eq!(rate.window_secs(), 5);
    }

    #[test]
    fn intervals_round_up_and_seconds_round_up() {
        assert_eq!(Rate::new(3, 1).interval_us(), 333_334);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(1_000_000), 1);
        assert_eq!(ceil_secs(1_000_001), 2);
        assert_eq!(ceil_secs(-5), 0);
    }
}
