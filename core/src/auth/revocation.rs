//! The revocation check every door makes (REST, WebSocket `$connect`, SSE): is the token, or
//! its subject, revoked?
//!
//! Answers are cached in the process for at most `max_age` (`auth.revocation_cache_ms`),
//! negative ones too, so a warm Lambda or a streamer asks the store about a token at most once
//! per `max_age`: that is the bound within which a revocation takes effect everywhere. The
//! cache is bounded in entries; when full of live entries it starts over rather than track
//! recency (as [`super::TokenCache`] does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::{Revocation, Timestamp, UserId};
use crate::store::{RevocationStore, StoreError};

/// Why a check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The token or its subject is revoked.
    #[error("the token is revoked ({})", .0.target)]
    Revoked(Revocation),
    /// The store could not be asked; nothing is let through unchecked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A cached answer: the revocation in force when asked (or none), fresh until `fresh_until`.
#[derive(Debug, Clone)]
struct Answer {
    revocation: Option<Revocation>,
    fresh_until: Timestamp,
}

/// Checks tokens against the revocation list, through a short-lived cache. Clones share it.
#[derive(Clone)]
pub struct RevocationCheck {
    store: Arc<dyn RevocationStore>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    capacity: usize,
    answers: Arc<Mutex<HashMap<(String, UserId), Answer>>>,
}

impl std::fmt::Debug for RevocationCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationCheck")
            .field("max_age", &self.max_age)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl RevocationCheck {
    /// A check over `store` whose answers are kept at most `max_age`, for at most `capacity`
    /// tokens.
    pub fn new(
        store: Arc<dyn RevocationStore>,
        clock: Arc<dyn Clock>,
        max_age: Duration,
        capacity: usize,
    ) -> Self {
        Self {
            store,
            clock,
            max_age,
            capacity,
            answers: Arc::default(),
        }
    }

    /// Passes unless the token `token_id` or every token of `subject` is revoked.
    ///
    /// # Errors
    /// [`RevocationError::Revoked`], or the store could not be asked (and nothing was cached).
    pub async fn check(&self, token_id: &str, subject: &UserId) -> Result<(), RevocationError> {
        let now = self.clock.now();
        let key = (token_id.to_owned(), subject.clone());
        let cached = self
            .lock()
            .get(&key)
            .filter(|a| a.fresh_until > now)
            .cloned();
        let revocation = if let Some(answer) = cached {
            answer.revocation
        } else {
            let revocation = self.store.revocation(token_id, subject).await?;
            self.remember(key, revocation.clone(), now);
            revocation
        };
        match revocation {
            Some(revocation) if revocation.is_in_force(now) => {
                Err(RevocationError::Revoked(revocation))
            }
            _ => Ok(()),
        }
    }

    fn remember(&self, key: (String, UserId), revocation: Option<Revocation>, now: Timestamp) {
        if self.max_age.is_zero() {
            return;
        }
        let fresh_until = now.plus(self.max_age);
        let mut answers = self.lock();
        if answers.len() >= self.capacity {
            answers.retain(|_, a| a.fresh_until > now);
            if answers.len() >= self.capacity {
                answers.clear();
            }
        }
        answers.insert(
            key,
            Answer {
                revocation,
                fresh_until,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, UserId), Answer>> {
        // Every change is a single insert or a clear: a panic cannot leave it half-done.
        self.answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::{RevocationTarget, TokenId};
    use crate::store::InMemoryStore;

    fn user(name: &str) -> UserId {
        UserId::parse("sub", name).unwrap()
    }

    fn setup(
        max_age: Duration,
        capacity: usize,
    ) -> (Arc<ManualClock>, InMemoryStore, RevocationCheck) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(1_000_000)));
        let store = InMemoryStore::new(clock.clone());
        let check = RevocationCheck::new(Arc::new(store.clone()), clock.clone(), max_age, capacity);
        (clock, store, check)
    }

    async fn revoke(store: &InMemoryStore, target: RevocationTarget, until: Timestamp) {
        store.revoke(&Revocation { target, until }).await.unwrap();
    }

    #[tokio::test]
    async fn a_revocation_takes_effect_once_the_cached_answer_is_older_than_the_bound() {
        let (clock, store, check) = setup(Duration::from_secs(5), 100);
        check.check("t1", &user("alice")).await.unwrap();
        let until = clock.now().plus(Duration::from_secs(3600));
        revoke(
            &store,
            RevocationTarget::Token(TokenId::parse("t", "t1").unwrap()),
            until,
        )
        .await;

        // The negative answer is still fresh: the revocation is not seen yet.
        clock.advance(Duration::from_millis(4_999));
        assert!(check.check("t1", &user("alice")).await.is_ok());
        clock.advance(Duration::from_millis(1));
        assert!(matches!(
            check.check("t1", &user("alice")).await,
            Err(RevocationError::Revoked(_))
        ));
        // Another token of the same user is not revoked.
        assert!(check.check("t2", &user("alice")).await.is_ok());
    }

    #[tokio::test]
    async fn a_subject_revocation_refuses_every_token_of_the_subject_until_it_lapses() {
        let (clock, store, check) = setup(Duration::from_secs(5), 100);
        let until = clock.now().plus(Duration::from_secs(60));
        revoke(&store, RevocationTarget::Subject(user("mallory")), until).await;

        assert!(check.check("a", &user("mallory")).await.is_err());
        assert!(check.check("b", &user("mallory")).await.is_err());
        assert!(check.check("a", &user("alice")).await.is_ok());
        clock.advance(Duration::from_secs(60));
        assert!(check.check("a", &user("mallory")).await.is_ok());
    }

    #[tokio::test]
    async fn the_cache_never_holds_more_than_its_capacity() {
        let (_clock, _store, check) = setup(Duration::from_secs(5), 3);
        for i in 0..10 {
            check.check(&format!("t{i}"), &user("alice")).await.unwrap();
            assert!(check.lock().len() <= 3);
        }
    }
}
