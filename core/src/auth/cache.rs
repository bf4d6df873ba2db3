//! A bounded cache of validated tokens, so a warm Lambda or the streamer does not ask the auth
//! service on every request.
//!
//! Keys are SHA-256 digests, so tokens themselves are not kept in memory longer than needed.
//! An entry lives for at most `max_age` and never past its token's expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::Principal;
use crate::domain::Timestamp;

/// Validated tokens, bounded in count and age.
#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], (Principal, Timestamp)>>,
    capacity: usize,
    max_age: Duration,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens, each kept at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            max_age,
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The cached principal of `token`, if still fresh at `now`.
    pub fn get(&self, token: &str, now: Timestamp) -> Option<Principal> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&Self::key(token))
            .filter(|(principal, until)| *until > now && principal.expires_at > now)
            .map(|(principal, _)| principal.clone())
    }

    /// Remembers a validated token.
    pub fn insert(&self, token: &str, principal: Principal, now: Timestamp) {
        let until = now.plus(self.max_age).min(principal.expires_at);
        if until <= now {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: start over rather than track recency.
                entries.clear();
            }
        }
        entries.insert(Self::key(token), (principal, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn principal(expires_at: Timestamp) -> Principal {
        Principal {
            user: UserId::parse("sub", "alice").unwrap(),
            scopes: vec![],
            expires_at,
            token_id: "t1".into(),
        }
    }

    #[test]
    fn entries_expire_with_the_token_or_the_max_age_whichever_is_first() {
        let cache = TokenCache::new(10, Duration::from_secs(60));
        let now = Timestamp::from_unix_millis(1_000_000);
        cache.insert("short", principal(now.plus(Duration::from_secs(5))), now);
        cache.insert("long", principal(now.plus(Duration::from_secs(3600))), now);

        let later = now.plus(Duration::from_secs(30));
        assert!(cache.get("short", later).is_none());
        assert!(cache.get("long", later).is_some());
        assert!(
            cache
                .get("long", now.plus(Duration::from_secs(60)))
                .is_none()
        );
        assert!(cache.get("unknown", now).is_none());
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = TokenCache::new(3, Duration::from_secs(60));
        let now = Timestamp::from_unix_millis(0);
        for i in 0..10 {
            cache.insert(
                &format!("t{i}"),
                principal(now.plus(Duration::from_secs(600))),
                now,
            );
            assert!(cache.entries.lock().unwrap().len() <= 3);
        }
        assert!(cache.get("t9", now).is_some());
    }
}
