use std::time::Duration;

use session_core::domain::{Connection, ConnectionQuality};
use session_core::store::{Quota, StoreError};

use crate::helpers::Harness;

const MINUTE: Duration = Duration::from_secs(60);

pub async fn connections_are_recorded_listed_and_deleted_idempotently(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let a = h.connection(&session, "L0SM9cOFvHcCIhw=", MINUTE);
    let b = h.connection(&session, "Kx9_b-c2dHcAbcd=", MINUTE);
    h.store.put_connection(&a, 8).await.unwrap();
    h.store.put_connection(&b, 8).await.unwrap();

    assert_eq!(
        h.store.get_connection(&session.id, &a.id).await.unwrap(),
        Some(a.clone())
    );
    let mut listed = h.store.list_connections(&session.id).await.unwrap();
    listed.sort_by(|x, y| x.id.cmp(&y.id));
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(listed, expected);

    assert!(h.store.delete_connection(&session.id, &a.id).await.unwrap());
    assert!(!h.store.delete_connection(&session.id, &a.id).await.unwrap());
    assert_eq!(
        h.store.get_connection(&session.id, &a.id).await.unwrap(),
        None
    );
    assert_eq!(
        h.store.list_connections(&session.id).await.unwrap(),
        vec![b]
    );
}

pub async fn a_heartbeat_update_needs_the_current_version(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let c = h.connection(&session, "conn-1", MINUTE);
    h.store.put_connection(&c, 8).await.unwrap();

    let beat = Connection {
        last_seen_at: h.now(),
        expires_at: h.now().plus(2 * MINUTE),
        last_event_id: Some("1-42".into()),
        quality: ConnectionQuality {
            rtt_ms: 20,
            heartbeats: 1,
            last_seq: 1,
            ..ConnectionQuality::default()
        },
        version: 2,
        ..c.clone()
    };
    h.store.update_connection(&c, &beat).await.unwrap();
    let err = h.store.update_connection(&c, &beat).await.unwrap_err();

    assert!(
        matches!(
            err,
            StoreError::Conflict {
                entity: "connection",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        h.store.get_connection(&session.id, &c.id).await.unwrap(),
        Some(beat)
    );
}

pub async fn the_connections_quota_frees_slots_of_dead_connections(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let dying = h.connection(&session, "conn-1", MINUTE);
    h.store.put_connection(&dying, 1).await.unwrap();

    let err = h
        .store
        .put_connection(&h.connection(&session, "conn-2", MINUTE), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::QuotaExceeded {
                quota: Quota::ConnectionsPerSession,
                limit: 1
            }
        ),
        "{err:?}"
    );

    // It stops heart-beating; past its expiry it is dead though still stored.
    h.clock.advance(MINUTE);
    assert_eq!(
        h.store
            .get_connection(&session.id, &dying.id)
            .await
            .unwrap(),
        None
    );
    assert!(
        h.store
            .list_connections(&session.id)
            .await
            .unwrap()
            .is_empty()
    );
    let fresh = h.connection(&session, "conn-2", MINUTE);
    h.store.put_connection(&fresh, 1).await.unwrap();
    assert_eq!(
        h.store.list_connections(&session.id).await.unwrap(),
        vec![fresh]
    );
}

pub async fn a_closed_session_takes_no_connections(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let closed = session.close(h.now()).unwrap();
    h.store.update_session(&session, &closed).await.unwrap();

    let err = h
        .store
        .put_connection(&h.connection(&session, "conn-1", MINUTE), 8)
        .await
        .unwrap_err();

    assert!(
        matches!(err, StoreError::SessionNotActive { .. }),
        "{err:?}"
    );
}
