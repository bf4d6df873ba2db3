use std::time::Duration;

use session_core::domain::{Connection, ConnectionQuality, PageRequest, Session, SessionId};
use session_core::store::{Quota, StoreError};

use crate::helpers::{Harness, user};

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

/// The store's sessions with connections, sorted (the store promises no order).
async fn sessions_with_connections(h: &Harness) -> Vec<SessionId> {
    let mut sessions = h.store.sessions_with_connections().await.unwrap();
    sessions.sort();
    sessions
}

/// A stored session of `owner`.
async fn stored_session(h: &Harness, owner: &str) -> Session {
    let session = h.session(owner);
    h.store.create_session(&session, 100).await.unwrap();
    session
}

/// Records a connection of `session` that lives `lives` from now.
async fn connect(h: &Harness, session: &Session, id: &str, lives: Duration) -> Connection {
    let connection = h.connection(session, id, lives);
    h.store.put_connection(&connection, 8).await.unwrap();
    connection
}

fn sorted_ids(sessions: &[&Session]) -> Vec<SessionId> {
    let mut ids: Vec<SessionId> = sessions.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    ids
}

pub async fn no_connections_means_no_sessions_with_connections(h: Harness) {
    stored_session(&h, "alice").await;

    assert_eq!(sessions_with_connections(&h).await, vec![]);
}

pub async fn sessions_with_connections_lists_each_such_session_once(h: Harness) {
    let a = stored_session(&h, "alice").await;
    let b = stored_session(&h, "alice").await;
    let c = stored_session(&h, "bob").await;
    stored_session(&h, "bob").await; // no connections
    connect(&h, &a, "conn-a1", MINUTE).await;
    connect(&h, &a, "conn-a2", MINUTE).await;
    connect(&h, &b, "conn-b1", MINUTE).await;
    connect(&h, &c, "conn-c1", MINUTE).await;

    let listed = sessions_with_connections(&h).await;

    assert_eq!(listed, sorted_ids(&[&a, &b, &c]), "each exactly once");
}

pub async fn sessions_with_connections_are_found_across_every_shard(h: Harness) {
    let mut sessions = Vec::new();
    for i in 0..20 {
        let session = stored_session(&h, "alice").await;
        connect(&h, &session, &format!("conn-{i}"), MINUTE).await;
        sessions.push(session);
    }

    let listed = sessions_with_connections(&h).await;

    assert_eq!(listed, sorted_ids(&sessions.iter().collect::<Vec<_>>()));
}

pub async fn a_session_whose_connections_expired_is_not_listed(h: Harness) {
    let dying = stored_session(&h, "alice").await;
    let living = stored_session(&h, "alice").await;
    connect(&h, &dying, "conn-1", MINUTE).await;
    connect(&h, &living, "conn-2", 2 * MINUTE).await;

    // Past the first connection's expiry: dead, though still stored.
    h.clock.advance(MINUTE);

    assert_eq!(sessions_with_connections(&h).await, vec![living.id]);
}

pub async fn a_session_whose_connections_were_deleted_is_not_listed(h: Harness) {
    let left = stored_session(&h, "alice").await;
    let staying = stored_session(&h, "alice").await;
    let gone = connect(&h, &left, "conn-1", MINUTE).await;
    let one_of_two = connect(&h, &staying, "conn-2", MINUTE).await;
    connect(&h, &staying, "conn-3", MINUTE).await;

    assert!(h.store.delete_connection(&left.id, &gone.id).await.unwrap());
    assert!(
        h.store
            .delete_connection(&staying.id, &one_of_two.id)
            .await
            .unwrap()
    );

    assert_eq!(sessions_with_connections(&h).await, vec![staying.id]);
}

pub async fn a_heartbeat_keeps_the_session_listed(h: Harness) {
    let session = stored_session(&h, "alice").await;
    let c = connect(&h, &session, "conn-1", MINUTE).await;
    let beat = Connection {
        last_seen_at: h.now(),
        expires_at: h.now().plus(2 * MINUTE),
        quality: ConnectionQuality {
            heartbeats: 1,
            ..ConnectionQuality::default()
        },
        version: 2,
        ..c.clone()
    };
    h.store.update_connection(&c, &beat).await.unwrap();

    // Past the expiry it had before the heartbeat, within the one the heartbeat gave it.
    h.clock.advance(MINUTE);
    assert_eq!(
        sessions_with_connections(&h).await,
        vec![session.id.clone()]
    );

    // It stops heart-beating.
    h.clock.advance(MINUTE);
    assert_eq!(sessions_with_connections(&h).await, vec![]);
}

pub async fn connections_never_appear_in_the_owners_session_list(h: Harness) {
    let older = stored_session(&h, "alice").await;
    let newer = stored_session(&h, "alice").await;
    for session in [&older, &newer] {
        for i in 0..3 {
            connect(&h, session, &format!("conn-{i}"), MINUTE).await;
        }
    }

    let all = h
        .store
        .list_sessions(&user("alice"), &PageRequest::parse(Some(10), None).unwrap())
        .await
        .unwrap();
    let first = h
        .store
        .list_sessions(&user("alice"), &PageRequest::parse(Some(1), None).unwrap())
        .await
        .unwrap();

    assert_eq!(all.items, vec![newer.clone(), older]);
    assert_eq!(all.next_cursor, None);
    assert_eq!(first.items, vec![newer]);
    assert!(first.next_cursor.is_some());
}

pub async fn the_serving_streamer_round_trips_through_a_heartbeat_update(h: Harness) {
    let session = stored_session(&h, "alice").await;
    let c = connect(&h, &session, "conn-1", MINUTE).await;
    assert_eq!(
        h.store
            .get_connection(&session.id, &c.id)
            .await
            .unwrap()
            .unwrap()
            .served_by,
        None,
        "nobody seen at connect"
    );

    let seen = Connection {
        served_by: Some("streamer-a".into()),
        version: 2,
        ..c.clone()
    };
    h.store.update_connection(&c, &seen).await.unwrap();
    assert_eq!(
        h.store.get_connection(&session.id, &c.id).await.unwrap(),
        Some(seen.clone())
    );
    assert_eq!(
        h.store.list_connections(&session.id).await.unwrap(),
        vec![seen.clone()]
    );

    let moved = Connection {
        served_by: Some("streamer-b".into()),
        version: 3,
        ..seen.clone()
    };
    h.store.update_connection(&seen, &moved).await.unwrap();
    let forgotten = Connection {
        served_by: None,
        version: 4,
        ..moved.clone()
    };
    h.store.update_connection(&moved, &forgotten).await.unwrap();

    assert_eq!(
        h.store.get_connection(&session.id, &c.id).await.unwrap(),
        Some(forgotten)
    );
}
