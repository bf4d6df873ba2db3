use std::time::Duration;

use session_core::store::StoreError;

use crate::helpers::Harness;

const TTL: Duration = Duration::from_secs(10);

pub async fn a_lease_has_one_holder_until_it_lapses(h: Harness) {
    let a = h
        .store
        .acquire_lease("session/s1", "streamer-a", TTL)
        .await
        .unwrap();
    let err = h
        .store
        .acquire_lease("session/s1", "streamer-b", TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::LeaseHeld { owner, .. } if owner == "streamer-a"),
        "{err:?}"
    );
    let again = h
        .store
        .acquire_lease("session/s1", "streamer-a", TTL)
        .await
        .unwrap();
    assert_eq!(
        again.token, a.token,
        "re-acquiring one's own lease keeps its token"
    );

    h.clock.advance(Duration::from_secs(5));
    let renewed = h.store.renew_lease(&a, TTL).await.unwrap();
    assert_eq!(renewed.expires_at, h.now().plus(TTL));
    assert_eq!(
        h.store.get_lease("session/s1").await.unwrap(),
        Some(renewed.clone())
    );

    // streamer-a stops renewing; after expiry streamer-b takes over with a higher token.
    h.clock.advance(TTL);
    assert_eq!(h.store.get_lease("session/s1").await.unwrap(), None);
    let b = h
        .store
        .acquire_lease("session/s1", "streamer-b", TTL)
        .await
        .unwrap();
    assert_eq!(b.owner, "streamer-b");
    assert!(b.token > a.token);
    let err = h.store.renew_lease(&renewed, TTL).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    h.store.release_lease(&renewed).await.unwrap();
    assert_eq!(h.store.get_lease("session/s1").await.unwrap(), Some(b));
}

pub async fn a_released_lease_is_taken_with_a_higher_token(h: Harness) {
    let a = h
        .store
        .acquire_lease("session/s2", "streamer-a", TTL)
        .await
        .unwrap();

    h.store.release_lease(&a).await.unwrap();
    let b = h
        .store
        .acquire_lease("session/s2", "streamer-b", TTL)
        .await
        .unwrap();

    assert!(b.token > a.token);
    assert!(h.store.renew_lease(&a, TTL).await.is_err());
}

pub async fn a_holder_marks_its_lease_draining_and_renewals_keep_it(h: Harness) {
    let a = h
        .store
        .acquire_lease("session/s3", "streamer-a", TTL)
        .await
        .unwrap();
    assert!(!a.draining, "a lease is taken not draining");

    let marked = h.store.mark_draining(&a).await.unwrap();
    h.clock.advance(Duration::from_secs(5));
    let renewed = h.store.renew_lease(&marked, TTL).await.unwrap();

    assert!(marked.draining);
    assert_eq!(
        marked.expires_at, a.expires_at,
        "marking does not extend it"
    );
    assert_eq!(marked.token, a.token);
    assert!(
        renewed.draining,
        "a draining holder's renewal keeps it draining"
    );
    assert_eq!(renewed.expires_at, h.now().plus(TTL));
    assert_eq!(
        h.store.get_lease("session/s3").await.unwrap(),
        Some(renewed.clone())
    );
    // Marking again changes nothing.
    assert_eq!(h.store.mark_draining(&a).await.unwrap(), renewed);
}

pub async fn acquiring_a_lease_clears_draining(h: Harness) {
    let a = h
        .store
        .acquire_lease("session/s4", "streamer-a", TTL)
        .await
        .unwrap();
    let marked = h.store.mark_draining(&a).await.unwrap();

    // Re-acquired by its owner (a restarted instance of the same name): it serves again.
    let again = h
        .store
        .acquire_lease("session/s4", "streamer-a", TTL)
        .await
        .unwrap();
    assert_eq!(again.token, a.token);
    assert!(!again.draining, "{again:?}");

    // Handed over: the next holder is not draining.
    h.store.mark_draining(&again).await.unwrap();
    h.store.release_lease(&marked).await.unwrap();
    let b = h
        .store
        .acquire_lease("session/s4", "streamer-b", TTL)
        .await
        .unwrap();

    assert!(b.token > a.token);
    assert!(!b.draining, "{b:?}");
    assert_eq!(h.store.get_lease("session/s4").await.unwrap(), Some(b));
}

pub async fn only_the_live_holder_can_mark_a_lease_draining(h: Harness) {
    // Never taken.
    let phantom = session_core::domain::Lease {
        name: "session/s5".to_owned(),
        owner: "streamer-a".to_owned(),
        expires_at: h.now().plus(TTL),
        token: 1,
        draining: false,
    };
    let err = h.store.mark_draining(&phantom).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");

    // Lapsed, though nobody took it since.
    let a = h
        .store
        .acquire_lease("session/s5", "streamer-a", TTL)
        .await
        .unwrap();
    h.clock.advance(TTL);
    let err = h.store.mark_draining(&a).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::LeaseLost { name } if name == "session/s5"),
        "{err:?}"
    );

    // Taken by another: the deposed holder cannot mark its successor's lease.
    let b = h
        .store
        .acquire_lease("session/s5", "streamer-b", TTL)
        .await
        .unwrap();
    let err = h.store.mark_draining(&a).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    let stale_token = session_core::domain::Lease {
        owner: "streamer-b".to_owned(),
        ..a.clone()
    };
    let err = h.store.mark_draining(&stale_token).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    assert_eq!(h.store.get_lease("session/s5").await.unwrap(), Some(b));

    // Released: no longer held.
    let b = h.store.get_lease("session/s5").await.unwrap().unwrap();
    h.store.release_lease(&b).await.unwrap();
    let err = h.store.mark_draining(&b).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
}
