//! A circuit breaker: after enough consecutive failures of a dependency, stop calling it for a
//! while and fail fast, then let one probe through to see whether it recovered.
//!
//! Hand-written: the Rust breaker crates either predate async or wrap tower services, and ours
//! must also be readable (for health and metrics) and shared by plain async calls.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Classify;

/// The breaker's state, as health checks and metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// One probe call is allowed; its outcome closes or re-opens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// A stable name for health output and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A call refused because the breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open: the dependency failed repeatedly; retry after {retry_after:?}")]
pub struct CircuitOpen {
    /// How long until the breaker lets a probe through.
    pub retry_after: Duration,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Trips after `threshold` consecutive transient failures; stays open for `cool_down`.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() >= *until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call.
    ///
    /// # Errors
    /// The breaker is open, or half-open with its probe already under way.
    pub fn permit(&self) -> Result<(), CircuitOpen> {
        let mut inner = self.lock();
        match &mut *inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } => {
                let now = Instant::now();
                if now >= *until {
                    *inner = Inner::HalfOpen { probing: true };
                    Ok(())
                } else {
                    Err(CircuitOpen {
                        retry_after: *until - now,
                    })
                }
            }
            Inner::HalfOpen { probing } if !*probing => {
                *probing = true;
                Ok(())
            }
            Inner::HalfOpen { .. } => Err(CircuitOpen {
                retry_after: Duration::ZERO,
            }),
        }
    }

    /// Records a call that reached the dependency and got an answer (even a "no").
    pub fn record_success(&self) {
        *self.lock() = Inner::Closed { failures: 0 };
    }

    /// Records a failure of the dependency itself.
    pub fn record_failure(&self) {
        let mut inner = self.lock();
        let open = Inner::Open {
            until: Instant::now() + self.cool_down,
        };
        *inner = match &*inner {
            Inner::Closed { failures } if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            _ => open,
        };
    }

    /// Runs `call` if permitted and records its outcome: transient errors count as failures
    /// of the dependency, permanent ones (the dependency answered "no") as successes.
    ///
    /// # Errors
    /// `Err(Err(CircuitOpen))` if refused; `Err(Ok(e))` with the call's own error.
    pub async fn call<T, E, Fut>(&self, call: Fut) -> Result<T, Result<E, CircuitOpen>>
    where
        E: Classify,
        Fut: Future<Output = Result<T, E>>,
    {
        self.permit().map_err(Err)?;
        match call.await {
            Ok(value) => {
                self.record_success();
                Ok(value)
            }
            Err(e) => {
                if e.is_transient() {
                    self.record_failure();
                } else {
                    self.record_success();
                }
                Err(Ok(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_the_threshold_and_fails_fast() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            breaker.record_failure();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        let refused = breaker.permit().unwrap_err();
        assert!(refused.retry_after > Duration::from_secs(59));
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(60));
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn after_the_cool_down_one_probe_decides() {
        let breaker = CircuitBreaker::new(1, Duration::ZERO);
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.permit().unwrap();
        assert!(breaker.permit().is_err(), "only one probe at a time");
        breaker.record_failure();
        breaker.permit().unwrap();
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.permit().unwrap();
        breaker.permit().unwrap();
    }
}
