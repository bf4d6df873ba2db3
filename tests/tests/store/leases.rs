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
