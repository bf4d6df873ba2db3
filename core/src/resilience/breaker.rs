//! A circuit breaker: after enough consecutive failures of a dependency, stop calling it for a
//! while and fail fast, then let one probe through to see whether it recovered.
//!
//! Hand-written: the Rust breaker crates either predate async or wrap tower services, and ours
//! must also be readable (for health and metrics) and shared by plain async calls.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

// Tokio's clock, so that tests can pause and advance time.
use tokio::time::Instant;

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
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `probe`: the number of the probe under way, if one is.
    HalfOpen {
        probe: Option<u64>,
    },
}

#[derive(Debug)]
struct State {
    inner: Inner,
    /// Numbers the probes, so that a probe's permit only ever frees its own slot.
    probes: u64,
}

/// Trips after `threshold` consecutive transient failures; stays open for `cool_down`.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

/// Leave to make one call, from [`CircuitBreaker::permit`]: record the call's outcome on it.
///
/// Dropped without an outcome (its caller timed out or went away, or a stream ended in a way
/// that says nothing about the dependency), a half-open probe's permit frees the probe slot and
/// the breaker stays half-open: the next call is the probe. It does not count as a failure:
/// nothing was learned about the dependency, and a caller whose own timeout is shorter than the
/// dependency's deadline would otherwise keep re-opening a breaker in front of a healthy
/// dependency. Either way the slot never stays taken, so the breaker cannot stay half-open
/// with every call refused.
#[derive(Debug)]
#[must_use = "a permit records the outcome of the call it allows"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    /// The probe this permit is, when the breaker was half-open.
    probe: Option<u64>,
}

impl Permit<'_> {
    /// The call reached the dependency and got an answer (even a "no"): closes the breaker.
    pub fn record_success(&self) {
        self.breaker.record_success();
    }

    /// The dependency itself failed: counts towards the threshold, or re-opens a half-open
    /// breaker.
    pub fn record_failure(&self) {
        self.breaker.record_failure();
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let Some(mine) = self.probe else {
            return;
        };
        let mut state = self.breaker.lock();
        // Any recorded outcome has moved the breaker on; then there is nothing to free.
        if let Inner::HalfOpen { probe } = &mut state.inner
            && *probe == Some(mine)
        {
            *probe = None;
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            state: Mutex::new(State {
                inner: Inner::Closed { failures: 0 },
                probes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match &self.lock().inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() >= *until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call; the outcome is recorded on the permit.
    ///
    /// # Errors
    /// The breaker is open, or half-open with its probe already under way.
    pub fn permit(&self) -> Result<Permit<'_>, CircuitOpen> {
        let mut state = self.lock();
        let probe = state.probes;
        let admitted = match &mut state.inner {
            Inner::Closed { .. } => return Ok(self.permit_for(None)),
            Inner::Open { until } => {
                let now = Instant::now();
                if now < *until {
                    return Err(CircuitOpen {
                        retry_after: *until - now,
                    });
                }
                state.inner = Inner::HalfOpen { probe: Some(probe) };
                true
            }
            Inner::HalfOpen { probe: slot @ None } => {
                *slot = Some(probe);
                true
            }
            Inner::HalfOpen { probe: Some(_) } => false,
        };
        if !admitted {
            return Err(CircuitOpen {
                retry_after: Duration::ZERO,
            });
        }
        state.probes += 1;
        Ok(self.permit_for(Some(probe)))
    }

    fn permit_for(&self, probe: Option<u64>) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
        }
    }

    fn record_success(&self) {
        self.lock().inner = Inner::Closed { failures: 0 };
    }

    fn record_failure(&self) {
        let mut state = self.lock();
        let open = Inner::Open {
            until: Instant::now() + self.cool_down,
        };
        state.inner = match &state.inner {
            Inner::Closed { failures } if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            _ => open,
        };
    }

    /// Runs `call` if permitted and records its outcome: transient errors count as failures
    /// of the dependency, permanent ones (the dependency answered "no") as successes. A call
    /// dropped before it ends records nothing (see [`Permit`]).
    ///
    /// # Errors
    /// `Err(Err(CircuitOpen))` if refused; `Err(Ok(e))` with the call's own error.
    pub async fn call<T, E, Fut>(&self, call: Fut) -> Result<T, Result<E, CircuitOpen>>
    where
        E: Classify,
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.permit().map_err(Err)?;
        match call.await {
            Ok(value) => {
                permit.record_success();
                Ok(value)
            }
            Err(e) => {
                if e.is_transient() {
                    permit.record_failure();
                } else {
                    permit.record_success();
                }
                Err(Ok(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(10);

    /// A breaker that one failure opens, for `COOL_DOWN`.
    fn opened() -> CircuitBreaker {
        let breaker = CircuitBreaker::new(1, COOL_DOWN);
        breaker.record_failure();
        breaker
    }

    /// A transient error, as a dependency that did not answer gives.
    #[derive(Debug)]
    struct Down;

    impl Classify for Down {
        fn class(&self) -> super::super::ErrorClass {
            super::super::ErrorClass::Transient
        }
    }

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

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_down_one_probe_is_admitted_at_a_time() {
        let breaker = opened();
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(breaker.permit().is_err(), "still cooling down");

        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = breaker.permit().expect("the probe is admitted");

        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.permit().is_err(), "only one probe at a time");
        drop(probe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_without_an_outcome_frees_the_slot() {
        let breaker = opened();
        tokio::time::advance(COOL_DOWN).await;
        let probe = breaker.permit().unwrap();

        drop(probe);

        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let next = breaker.permit().expect("the next call is the probe");
        next.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_on_its_probe_does_not_block_later_calls() {
        let breaker = opened();
        tokio::time::advance(COOL_DOWN).await;

        // The health check's case: its own timeout ends the probe before the dependency
        // answers or its deadline passes.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(1_500),
            breaker.call(std::future::pending::<Result<(), Down>>()),
        )
        .await;
        let later = breaker.call(async { Ok::<_, Down>("answered") }).await;

        assert!(gave_up.is_err());
        assert_eq!(later.map_err(drop), Ok("answered"));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_success_closes_the_breaker() {
        let breaker = opened();
        tokio::time::advance(COOL_DOWN).await;

        breaker.permit().unwrap().record_success();

        assert_eq!(breaker.state(), BreakerState::Closed);
        let first = breaker.permit().unwrap();
        let second = breaker.permit().unwrap();
        drop((first, second));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_failure_reopens_the_breaker_for_another_cool_down() {
        let breaker = opened();
        tokio::time::advance(COOL_DOWN).await;

        breaker.permit().unwrap().record_failure();

        assert_eq!(breaker.state(), BreakerState::Open);
        let refused = breaker.permit().unwrap_err();
        assert_eq!(refused.retry_after, COOL_DOWN);
        tokio::time::advance(COOL_DOWN).await;
        assert!(
            breaker.permit().is_ok(),
            "a new probe after the new cool-down"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_probe_never_frees_the_slot_of_a_later_one() {
        let breaker = opened();
        tokio::time::advance(COOL_DOWN).await;
        let stale = breaker.permit().unwrap();
        // Its breaker moved on meanwhile: closed by another call, opened again, cooled down.
        breaker.record_success();
        breaker.record_failure();
        tokio::time::advance(COOL_DOWN).await;
        let current = breaker.permit().unwrap();

        drop(stale);

        assert!(
            breaker.permit().is_err(),
            "the current probe keeps its slot"
        );
        drop(current);
    }
}
