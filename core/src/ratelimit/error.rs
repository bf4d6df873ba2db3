//! A refusal by a rate limit, and the IETF `RateLimit` header fields that describe it
//! (draft-ietf-httpapi-ratelimit-headers, 09 and later: `RateLimit-Policy: "name";q=..;w=..`,
//! `RateLimit: "name";r=..;t=..`).

use std::time::Duration;

use super::gcra::{Rate, ceil_secs};
use super::policy::LimitClass;

/// A request refused by a rate limit: nothing was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit {} exceeded ({} per second, burst {}); retry in {} s", .class.name(), .rate.per_second, .rate.burst, self.retry_after_secs())]
pub struct RateLimited {
    /// The limit that refused.
    pub class: LimitClass,
    /// Its rate.
    pub rate: Rate,
    /// Until one request would be admitted.
    pub retry_after: Duration,
    /// Until the allowance is full again.
    pub reset: Duration,
}

impl RateLimited {
    /// `Retry-After`: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after.as_micros() as i64).max(1)
    }

    /// The `RateLimit-Policy` field: the class's quota (its burst) and the window in which an
    /// empty allowance refills (`"writes";q=10;w=2`).
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.class.name(),
            self.rate.burst,
            self.rate.window_secs()
        )
    }

    /// The `RateLimit` field: nothing remaining, and the seconds until the allowance is full
    /// again (`"writes";r=0;t=3`).
    pub fn limit_header(&self) -> String {
        format!(
            "\"{}\";r=0;t={}",
            self.class.name(),
            ceil_secs(self.reset.as_micros() as i64).max(1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headers_follow_the_drafts_structured_field_syntax() {
        let refusal = RateLimited {
            class: LimitClass::Writes,
            rate: Rate::new(5, 10),
            retry_after: Duration::from_millis(200),
            reset: Duration::from_millis(2_200),
        };

        assert_eq!(refusal.policy_header(), "\"writes\";q=10;w=2");
        assert_eq!(refusal.limit_header(), "\"writes\";r=0;t=3");
        assert_eq!(refusal.retry_after_secs(), 1);
    }
}
