//! Retries with exponential backoff and full jitter, on top of `backon`.
//!
//! `backon`'s own jitter is additive (`delay + rand(0..delay)`); AWS's guidance for contended
//! clients is "full jitter" (`rand(0..=min(cap, base·2ⁿ))`), which spreads retries of many
//! clients best. [`FullJitter`] is that schedule as a `backon` backoff.

use std::future::Future;
use std::time::Duration;

use backon::Retryable as _;
use rand::Rng as _;

use super::Classify;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Upper bound of the first delay.
    pub base: Duration,
    /// Upper bound of any delay.
    pub cap: Duration,
}

impl RetryPolicy {
    /// For calls made while a client waits: a few quick retries.
    pub const INTERACTIVE: Self = Self {
        max_retries: 3,
        base: Duration::from_millis(50),
        cap: Duration::from_millis(800),
    };

    /// The delays this policy sleeps between attempts.
    pub fn backoff(&self) -> FullJitter {
        FullJitter {
            policy: *self,
            attempt: 0,
        }
    }
}

/// Delays of [`RetryPolicy`], each drawn uniformly from `0..=min(cap, base·2ⁿ)`.
#[derive(Debug, Clone)]
pub struct FullJitter {
    policy: RetryPolicy,
    attempt: u32,
}

impl FullJitter {
    /// The ceiling of the `attempt`-th delay (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
        exp.min(self.policy.cap)
    }
}

impl Iterator for FullJitter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.attempt >= self.policy.max_retries {
            return None;
        }
        let ceiling = self.ceiling(self.attempt);
        self.attempt += 1;
        let millis = rand::rng().random_range(0..=ceiling.as_millis() as u64);
        Some(Duration::from_millis(millis))
    }
}

/// Runs `op`, retrying transient failures as `policy` allows; returns the last error otherwise.
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, op: F) -> Result<T, E>
where
    E: Classify,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    op.retry(policy.backoff())
        .when(Classify::is_transient)
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::resilience::ErrorClass;

    #[derive(Debug)]
    struct Failure(ErrorClass);

    impl Classify for Failure {
        fn class(&self) -> ErrorClass {
            self.0
        }
    }

    const FAST: RetryPolicy = RetryPolicy {
        max_retries: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(4),
    };

    #[test]
    fn delays_stay_under_a_doubling_ceiling_up_to_the_cap() {
        let policy = RetryPolicy {
            max_retries: 6,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        };
        let ceilings: Vec<u128> = (0..6)
            .map(|n| policy.backoff().ceiling(n).as_millis())
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        for _ in 0..100 {
            let delays: Vec<Duration> = policy.backoff().collect();
            assert_eq!(delays.len(), 6);
            for (n, d) in delays.iter().enumerate() {
                assert!(*d <= policy.backoff().ceiling(n as u32), "{n}: {d:?}");
            }
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = retry(FAST, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Failure(ErrorClass::Transient))
            } else {
                Ok("done")
            }
        })
        .await;
        assert_eq!(result.unwrap(), "done");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(FAST, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure(ErrorClass::Permanent))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_stop_at_the_policy_limit() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(FAST, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure(ErrorClass::Transient))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1 + FAST.max_retries);
    }
}
