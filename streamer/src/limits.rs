//! The rate limits of stream opens, checked by the SSE route before anything costs.

use std::net::IpAddr;
use std::sync::Arc;

use session_core::clock::SystemClock;
use session_core::config::RateLimitSettings;
use session_core::domain::UserId;
use session_core::ratelimit::{LimitClass, RateLimited, RateLimiter, Subject, client_address};
use session_core::store::RateLimitStore;

/// The rate limits of stream opens: per user and per client address (the TCP peer, or the
/// address trusted proxies put in `X-Forwarded-For`), shared with every pod through the store.
#[derive(Debug, Clone)]
pub(crate) struct StreamLimits {
    limiter: Arc<RateLimiter>,
    /// `rate_limits.trusted_proxy_hops`.
    trusted_proxy_hops: u8,
}

impl StreamLimits {
    /// The limits of `settings`, deciding in `store`.
    pub(crate) fn new(settings: &RateLimitSettings, store: Arc<dyn RateLimitStore>) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::new(settings, store, Arc::new(SystemClock))),
            trusted_proxy_hops: settings.trusted_proxy_hops,
        }
    }

    /// Counts a stream open from `peer` (or the client address trusted proxies name).
    ///
    /// # Errors
    /// The address is over its rate.
    pub(crate) async fn check_address(
        &self,
        peer: IpAddr,
        forwarded_for: Option<&str>,
    ) -> Result<(), RateLimited> {
        let client = client_address(peer, forwarded_for, self.trusted_proxy_hops);
        self.limiter
            .check(LimitClass::ConnectAddress, Subject::Address(client))
            .await
    }

    /// Counts a stream open of `user`.
    ///
    /// # Errors
    /// The user is over its rate.
    pub(crate) async fn check_user(&self, user: &UserId) -> Result<(), RateLimited> {
        self.limiter
            .check(LimitClass::SseConnect, Subject::User(user))
            .await
    }
}
