//! The rate-limit port: GCRA on one theoretical arrival time per key, with the same answers from
//! both adapters (exact burst, exact retry-after, refill with time, keys apart, and exactly the
//! burst admitted under concurrency).

use std::sync::Arc;
use std::time::Duration;

use session_core::ratelimit::{Decision, Rate};

use crate::helpers::Harness;

/// 1 per second, burst 5: slow enough that no refill happens while a case runs.
const RATE: Rate = Rate::new(1, 5);

async fn acquire(h: &Harness, key: &str) -> Decision {
    h.store.acquire_rate(key, RATE).await.unwrap()
}

pub async fn a_fresh_key_admits_exactly_its_burst_then_refuses(h: Harness) {
    let mut decisions = Vec::new();
    for _ in 0..7 {
        decisions.push(acquire(&h, "writes#u:alice").await);
    }

    assert_eq!(
        decisions[0],
        Decision::Allowed {
            remaining: 4,
            reset: Duration::from_secs(1)
        }
    );
    assert_eq!(
        decisions[4],
        Decision::Allowed {
            remaining: 0,
            reset: Duration::from_secs(5)
        }
    );
    for refused in &decisions[5..] {
        assert_eq!(
            *refused,
            Decision::Denied {
                retry_after: Duration::from_secs(1),
                reset: Duration::from_secs(5)
            }
        );
    }
}

pub async fn a_refused_key_is_admitted_again_exactly_after_its_retry_after(h: Harness) {
    for _ in 0..5 {
        assert!(acquire(&h, "k").await.is_allowed());
    }
    h.clock.advance(Duration::from_millis(999));
    let early = acquire(&h, "k").await;
    h.clock.advance(Duration::from_millis(1));
    let on_time = acquire(&h, "k").await;

    assert_eq!(
        early,
        Decision::Denied {
            retry_after: Duration::from_millis(1),
            reset: Duration::from_millis(4_001)
        }
    );
    assert!(on_time.is_allowed(), "{on_time:?}");
}

pub async fn an_idle_key_refills_to_its_whole_burst(h: Harness) {
    for _ in 0..5 {
        acquire(&h, "k").await;
    }
    h.clock.advance(Duration::from_secs(60));

    let mut admitted = 0;
    for _ in 0..6 {
        if acquire(&h, "k").await.is_allowed() {
            admitted += 1;
        }
    }

    assert_eq!(admitted, 5);
}

pub async fn keys_are_limited_apart(h: Harness) {
    for _ in 0..5 {
        acquire(&h, "reads#u:alice").await;
    }

    assert!(!acquire(&h, "reads#u:alice").await.is_allowed());
    assert!(acquire(&h, "reads#u:bob").await.is_allowed());
    assert!(acquire(&h, "writes#u:alice").await.is_allowed());
}

pub async fn concurrent_requests_of_one_key_admit_exactly_the_burst(h: Harness) {
    let store = Arc::clone(&h.store);
    let attempts = (0..16).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.acquire_rate("race", RATE).await.unwrap() })
    });

    let mut admitted = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        if attempt.await.unwrap().is_allowed() {
            admitted += 1;
        }
    }

    assert_eq!(admitted, 5);
}
