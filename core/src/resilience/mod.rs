//! Calling things that fail: error classes, retries with full jitter, and a circuit breaker.
//!
//! Callers classify their errors ([`Classify`]); only transient ones are retried, and only
//! failures of the dependency itself (not "your request was wrong") count towards tripping a
//! breaker.

mod breaker;
mod retry;

pub use breaker::{BreakerState, CircuitBreaker, CircuitOpen, Permit};
pub use retry::{FullJitter, RetryPolicy, retry};

/// Whether trying again later may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Timeouts, throttling, unavailability: retry with backoff.
    Transient,
    /// Bad input, not found, refused: retrying gives the same answer.
    Permanent,
}

/// Errors that know their class.
pub trait Classify {
    /// This error's class.
    fn class(&self) -> ErrorClass;

    /// Whether it is worth retrying.
    fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}
