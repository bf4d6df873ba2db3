//! The rate limits of stream opens, checked by the SSE route before anything costs.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use session_core::clock::SystemClock;
use session_core::config::RateLimitSettings;
use session_core::domain::UserId;
use session_core::ratelimit::{LimitClass, RateLimited, RateLimiter, Subject, client_address};
use session_core::store::RateLimitStore;

/// The rate limits of stream opens: per user and per client address (the TCP peer, or the
/// address trusted proxies put in `X-Forwarded-For`), shared with every pod through the store.
#[derive(Debug, Clone)]
pub(crate) struct StreamLimits {
    /// The limiter of the quotas in force (replaced by [`StreamLimits::set_quotas`]).
    limiter: Arc<RwLock<Arc<RateLimiter>>>,
    store: Arc<dyn RateLimitStore>,
    /// `rate_limits.trusted_proxy_hops`.
    trusted_proxy_hops: u8,
}

impl StreamLimits {
    /// The limits of `settings`, deciding in `store`.
    pub(crate) fn new(settings: &RateLimitSettings, store: Arc<dyn RateLimitStore>) -> Self {
        Self {
            limiter: Arc::new(RwLock::new(limiter(settings, &store))),
            store,
            trusted_proxy_hops: settings.trusted_proxy_hops,
        }
    }

    /// Holds stream opens to `settings`' quotas from now on (a runtime settings change; the
    /// allowances spent so far are in the store and count on).
    pub(crate) fn set_quotas(&self, settings: &RateLimitSettings) {
        *self.limiter.write().unwrap_or_else(PoisonError::into_inner) =
            limiter(settings, &self.store);
    }

    /// The limiter in force.
    fn current(&self) -> Arc<RateLimiter> {
        self.limiter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
        self.current()
            .check(LimitClass::ConnectAddress, Subject::Address(client))
            .await
    }

    /// Counts a stream open of `user`.
    ///
    /// # Errors
    /// The user is over its rate.
    pub(crate) async fn check_user(&self, user: &UserId) -> Result<(), RateLimited> {
        self.current()
            .check(LimitClass::SseConnect, Subject::User(user))
            .await
    }
}

/// A limiter of `settings`' quotas deciding in `store`.
fn limiter(settings: &RateLimitSettings, store: &Arc<dyn RateLimitStore>) -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(
        settings,
        store.clone(),
        Arc::new(SystemClock),
    ))
}
