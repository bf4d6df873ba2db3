//! The limiter every door calls: an in-process pre-filter, then the store's exact decision.
//!
//! Pre-filter, so that a flood does not become a DynamoDB flood:
//! - a keyed `governor` limiter per class with the class's own quota. A key this process alone
//!   has seen over the quota is over it globally, so refusing it here is never wrong for a
//!   caller that stays within its rate (it only counts requests this process let through);
//! - the store's own refusals, remembered until their `Retry-After`: the store's TAT never
//!   moves back, so every request before then would be refused too.
//!
//! Both are bounded: at most once a second, keys back at full capacity (governor's
//! `retain_recent`) and lapsed refusals are dropped once a map holds more than
//! [`MAX_LOCAL_KEYS`]; refusals are cleared outright if that is not enough.
//!
//! If the store cannot answer, the request is admitted (fail open, logged and counted): the
//! limits protect the service from one caller, and refusing everyone because the table is
//! slow would turn a store hiccup into an outage of every door, while the pre-filter still
//! holds each process to the quota.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use tracing::warn;

use super::error::RateLimited;
use super::gcra::{self, Decision, Rate};
use super::policy::{LimitClass, Subject};
use crate::clock::Clock;
use crate::config::RateLimitSettings;
use crate::store::RateLimitStore;

/// Keys a process keeps per map before sweeping (each costs tens of bytes).
pub const MAX_LOCAL_KEYS: usize = 10_000;

/// One class: its rate and its pre-filter.
struct Class {
    rate: Rate,
    local: DefaultKeyedRateLimiter<String>,
}

/// Rate limits of every class, over a store.
pub struct RateLimiter {
    store: Arc<dyn RateLimitStore>,
    clock: Arc<dyn Clock>,
    classes: Vec<Class>,
    /// Store refusals: key → until (µs since the epoch).
    refused: Mutex<HashMap<String, i64>>,
    /// When the maps were last swept (µs since the epoch).
    swept_at: AtomicI64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field(
                "rates",
                &self.classes.iter().map(|c| c.rate).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// The store methods a limiter calls (part of every entry point's IAM policy that limits).
    pub const PORTS: &[crate::store::ports::PortUse] = &[crate::store::ports::PortUse {
        port: crate::store::ports::Port::RateLimits,
        methods: &["acquire_rate"],
    }];

    /// A limiter with the quotas of `settings`, deciding in `store`.
    pub fn new(
        settings: &RateLimitSettings,
        store: Arc<dyn RateLimitStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let classes = LimitClass::ALL
            .iter()
            .map(|class| {
                let rate = class.rate(settings);
                let interval = Duration::from_micros(rate.interval_us() as u64);
                let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(interval)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(burst);
                Class {
                    rate,
                    local: DefaultKeyedRateLimiter::keyed(quota),
                }
            })
            .collect();
        Self {
            store,
            clock,
            classes,
            refused: Mutex::default(),
            swept_at: AtomicI64::new(0),
        }
    }

    /// The rate of `class`.
    pub fn rate(&self, class: LimitClass) -> Rate {
        self.classes[class.index()].rate
    }

    /// Spends one request of `subject`'s allowance in `class`.
    ///
    /// # Errors
    /// [`RateLimited`] when the allowance is spent (here or, exactly, in the store).
    pub async fn check(&self, class: LimitClass, subject: Subject<'_>) -> Result<(), RateLimited> {
        let entry = &self.classes[class.index()];
        let key = format!("{}#{subject}", class.name());
        let now = gcra::micros_of_millis(self.clock.now().unix_millis());
        self.sweep(now);
        let refusal = |retry_after: Duration| RateLimited {
            class,
            rate: entry.rate,
            retry_after,
            reset: retry_after + Duration::from_micros(entry.rate.tolerance_us() as u64),
        };
        let until = self.refused().get(&key).copied();
        if let Some(until) = until.filter(|until| *until > now) {
            refused(class, "remembered");
            return Err(refusal(Duration::from_micros((until - now) as u64)));
        }
        if let Err(not_until) = entry.local.check_key(&key) {
            refused(class, "local");
            let wait = not_until.wait_time_from(entry.local.clock().now());
            return Err(refusal(wait));
        }
        match self.store.acquire_rate(&key, entry.rate).await {
            Ok(Decision::Allowed { .. }) => Ok(()),
            Ok(Decision::Denied { retry_after, reset }) => {
                refused(class, "store");
                let until = now + retry_after.as_micros() as i64;
                self.refused().insert(key, until);
                Err(RateLimited {
                    class,
                    rate: entry.rate,
                    retry_after,
                    reset,
                })
            }
            Err(error) => {
                warn!(%error, class = class.name(), "rate limit store unavailable; admitted");
                metrics::counter!("rate_limit_store_failures_total", "class" => class.name())
                    .increment(1);
                Ok(())
            }
        }
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // A map of hints: a panic elsewhere cannot leave it inconsistent.
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps the maps within [`MAX_LOCAL_KEYS`], at most once a second.
    fn sweep(&self, now: i64) {
        let last = self.swept_at.load(Ordering::Relaxed);
        if now - last < 1_000_000
            || self
                .swept_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for class in &self.classes {
            if class.local.len() > MAX_LOCAL_KEYS {
                class.local.retain_recent();
                class.local.shrink_to_fit();
            }
        }
        let mut refused = self.refused();
        if refused.len() > MAX_LOCAL_KEYS {
            refused.retain(|_, until| *until > now);
            if refused.len() > MAX_LOCAL_KEYS {
                refused.clear();
            }
            refused.shrink_to_fit();
        }
    }
}

fn refused(class: LimitClass, by: &'static str) {
    metrics::counter!("rate_limit_refusals_total", "class" => class.name(), "by" => by)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::RateQuota;
    use crate::domain::UserId;
    use crate::store::{InMemoryStore, StoreError};

    fn settings() -> RateLimitSettings {
        RateLimitSettings {
            writes: RateQuota {
                per_second: 1,
                burst: 3,
            },
            ..RateLimitSettings::default()
        }
    }

    /// A store that counts its calls, over the in-memory one, or that always fails.
    #[derive(Debug)]
    struct Counting {
        inner: Option<InMemoryStore>,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl RateLimitStore for Counting {
        async fn acquire_rate(&self, key: &str, rate: Rate) -> Result<Decision, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match &self.inner {
                Some(store) => store.acquire_rate(key, rate).await,
                None => Err(StoreError::Unavailable(Box::new(std::io::Error::other(
                    "down",
                )))),
            }
        }
    }

    fn limiter(store: Option<InMemoryStore>) -> (RateLimiter, Arc<Counting>) {
        let clock = ManualClock::at_system_time();
        let counting = Arc::new(Counting {
            inner: store,
            calls: std::sync::atomic::AtomicUsize::default(),
        });
        let limiter = RateLimiter::new(&settings(), counting.clone(), Arc::new(clock));
        (limiter, counting)
    }

    /// How many of `requests` writes of `user` in a row `limiter` admits.
    async fn admitted(limiter: &RateLimiter, user: &UserId, requests: usize) -> usize {
        let mut admitted = 0;
        for _ in 0..requests {
            if limiter
                .check(LimitClass::Writes, Subject::User(user))
                .await
                .is_ok()
            {
                admitted += 1;
            }
        }
        admitted
    }

    #[tokio::test]
    async fn a_flood_past_the_burst_is_refused_locally_without_asking_the_store() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_system_time());
        let (limiter, store) = limiter(Some(InMemoryStore::new(clock)));
        let user = UserId::parse("user", "alice").unwrap();

        let admitted = admitted(&limiter, &user, 50).await;

        assert_eq!(admitted, 3);
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            3,
            "only the burst reached it"
        );
    }

    #[tokio::test]
    async fn a_store_refusal_is_remembered_until_its_retry_after() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_system_time());
        let shared = InMemoryStore::new(clock);
        // Another process spent the allowance in the shared store.
        let (other, _) = limiter(Some(shared.clone()));
        let user = UserId::parse("user", "bob").unwrap();
        for _ in 0..3 {
            other
                .check(LimitClass::Writes, Subject::User(&user))
                .await
                .unwrap();
        }
        let (limiter, store) = limiter(Some(shared));

        let first = limiter
            .check(LimitClass::Writes, Subject::User(&user))
            .await;
        let second = limiter
            .check(LimitClass::Writes, Subject::User(&user))
            .await;

        let refusal = first.unwrap_err();
        assert_eq!(refusal.class, LimitClass::Writes);
        assert!(second.is_err());
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            1,
            "the second was not asked"
        );
    }

    #[tokio::test]
    async fn a_store_that_cannot_answer_admits_but_the_local_filter_still_holds() {
        let (limiter, _) = limiter(None);
        let user = UserId::parse("user", "carol").unwrap();

        let admitted = admitted(&limiter, &user, 10).await;

        assert_eq!(admitted, 3);
    }
}
