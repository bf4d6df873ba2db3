//! The per-user quotas across regions (`docs/multi-region.md`, "Quotas across regions"): each
//! region counts the sessions homed in it, so a user at the quota in one region can still
//! create in another, and a session taken over on failover moves its share of the counters.

use session_core::domain::{Session, SessionStatus};
use session_core::store::{StoreError, Takeover};

use crate::helpers::Harness;
use crate::home_fence::{region, store_of, take_over_from_a_to_b};

/// A session of `owner` homed in `home`.
fn homed(h: &Harness, owner: &str, home: &str) -> Session {
    Session {
        home_region: Some(region(home)),
        ..h.session(owner)
    }
}

fn refused_for_quota(result: &Result<(), StoreError>) {
    assert!(
        matches!(result, Err(StoreError::QuotaExceeded { .. })),
        "expected the sessions quota to refuse: {result:?}"
    );
}

pub async fn a_user_at_the_sessions_quota_in_one_region_can_still_create_in_another(h: Harness) {
    let (a, b) = (store_of(&h, "a"), store_of(&h, "b"));
    a.create_session(&homed(&h, "alice", "a"), 1).await.unwrap();
    refused_for_quota(&a.create_session(&homed(&h, "alice", "a"), 1).await);

    // Both regions write one table: b's count is its own.
    b.create_session(&homed(&h, "alice", "b"), 1).await.unwrap();
    refused_for_quota(&b.create_session(&homed(&h, "alice", "b"), 1).await);
    refused_for_quota(&a.create_session(&homed(&h, "alice", "a"), 1).await);
}

pub async fn a_session_taken_over_counts_in_its_new_home_and_no_longer_in_the_old(h: Harness) {
    let (a, b) = (store_of(&h, "a"), store_of(&h, "b"));
    let session = homed(&h, "alice", "a");
    a.create_session(&session, 1).await.unwrap();
    let moved = take_over_from_a_to_b(&b, &session.id).await;
    assert!(
        matches!(moved, Takeover::Moved { epoch: 2, .. }),
        "{moved:?}"
    );

    // a no longer counts it; b does (b is now at the quota).
    a.create_session(&homed(&h, "alice", "a"), 1).await.unwrap();
    refused_for_quota(&b.create_session(&homed(&h, "alice", "b"), 1).await);

    // Closing it in b frees b's slot.
    let stored = b.get_session(&session.id).await.unwrap().unwrap();
    let closed = stored.close(h.now()).unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    b.update_session(&stored, &closed).await.unwrap();
    b.create_session(&homed(&h, "alice", "b"), 1).await.unwrap();
}
