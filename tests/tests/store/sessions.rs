use session_core::domain::{
    Cursor, Metadata, NewSession, PageRequest, RegionName, Session, SessionId, SessionName,
    SessionStatus,
};
use session_core::store::{Quota, StoreError};

use crate::helpers::{Harness, LIFETIME, user};

pub async fn a_created_session_reads_back_identically(h: Harness) {
    let request = NewSession {
        name: Some(SessionName::parse("name", "morning drill").unwrap()),
        metadata: Some(
            Metadata::parse("metadata", serde_json::json!({"desk": "fx", "n": 3})).unwrap(),
        ),
    };
    let session = Session::open(user("alice"), request, h.now(), LIFETIME);

    h.store.create_session(&session, 10).await.unwrap();

    let read = h.store.get_session(&session.id).await.unwrap();
    assert_eq!(read, Some(session));
}

pub async fn an_unknown_session_is_absent(h: Harness) {
    assert_eq!(
        h.store.get_session(&SessionId::generate()).await.unwrap(),
        None
    );
}

pub async fn creating_the_same_session_twice_is_refused(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();

    let err = h.store.create_session(&session, 10).await.unwrap_err();

    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                entity: "session",
                ..
            }
        ),
        "{err:?}"
    );
}

pub async fn sessions_list_newest_first_in_pages_and_only_the_owners(h: Harness) {
    let mut created = Vec::new();
    for _ in 0..5 {
        let s = h.session("alice");
        h.store.create_session(&s, 10).await.unwrap();
        created.push(s.id);
    }
    h.store.create_session(&h.session("bob"), 10).await.unwrap();

    let mut listed = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let encoded = cursor.as_ref().map(Cursor::encode);
        let request = PageRequest::parse(Some(2), encoded.as_deref()).unwrap();
        let page = h
            .store
            .list_sessions(&user("alice"), &request)
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        listed.extend(page.items.into_iter().map(|s| s.id));
        pages += 1;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }

    created.reverse();
    assert_eq!(listed, created, "newest first, each exactly once");
    assert_eq!(pages, 3);
}

pub async fn a_forged_cursor_position_lists_nothing_of_other_users(h: Harness) {
    let bobs = h.session("bob");
    h.store.create_session(&bobs, 10).await.unwrap();
    // A cursor positioned after a session id later than Bob's still lists only Alice's.
    let later = SessionId::generate();
    let request = PageRequest::parse(Some(10), Some(&Cursor::after(&later).encode())).unwrap();

    let page = h
        .store
        .list_sessions(&user("alice"), &request)
        .await
        .unwrap();

    assert!(page.items.is_empty());
    assert_eq!(page.next_cursor, None);
}

pub async fn the_sessions_quota_counts_open_sessions_and_closing_frees_a_slot(h: Harness) {
    let first = h.session("alice");
    h.store.create_session(&first, 1).await.unwrap();
    h.store.create_session(&h.session("bob"), 1).await.unwrap();

    let err = h
        .store
        .create_session(&h.session("alice"), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::QuotaExceeded {
                quota: Quota::SessionsPerUser,
                limit: 1
            }
        ),
        "{err:?}"
    );

    let closed = first.close(h.now()).unwrap();
    h.store.update_session(&first, &closed).await.unwrap();
    assert_eq!(
        h.store
            .get_session(&first.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        SessionStatus::Closed
    );
    h.store
        .create_session(&h.session("alice"), 1)
        .await
        .unwrap();
}

pub async fn a_stale_writer_cannot_overwrite_a_newer_session(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let closed = session.close(h.now()).unwrap();
    h.store.update_session(&session, &closed).await.unwrap();

    // A writer still holding version 1 tries to write its own change.
    let renamed = Session {
        name: Some(SessionName::parse("name", "late").unwrap()),
        version: 2,
        ..session.clone()
    };
    let err = h
        .store
        .update_session(&session, &renamed)
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            StoreError::Conflict {
                entity: "session",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        h.store.get_session(&session.id).await.unwrap(),
        Some(closed)
    );
}

pub async fn a_writer_holding_an_old_home_cannot_write_the_session(h: Harness) {
    let region = |name| Some(RegionName::parse("region", name).unwrap());
    // The session moved to b at epoch 2 (a failover) after writers read it elsewhere.
    let moved = Session {
        home_region: region("b"),
        home_epoch: 2,
        ..h.session("alice")
    };
    h.store.create_session(&moved, 10).await.unwrap();

    for (home_region, home_epoch) in [(None, 1), (region("a"), 1), (region("b"), 1)] {
        let stale = Session {
            home_region,
            home_epoch,
            ..moved.clone()
        };
        let closed = stale.close(h.now()).unwrap();
        let err = h.store.update_session(&stale, &closed).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { .. }),
            "{:?}/{home_epoch}: {err:?}",
            stale.home_region
        );
    }

    assert_eq!(
        h.store.get_session(&moved.id).await.unwrap(),
        Some(moved.clone())
    );
    let closed = moved.close(h.now()).unwrap();
    h.store.update_session(&moved, &closed).await.unwrap();
}

pub async fn updating_an_unknown_session_is_not_found(h: Harness) {
    let session = h.session("alice");
    let closed = session.close(h.now()).unwrap();

    let err = h.store.update_session(&session, &closed).await.unwrap_err();

    assert!(
        matches!(
            err,
            StoreError::NotFound {
                entity: "session",
                ..
            }
        ),
        "{err:?}"
    );
}

pub async fn an_expired_session_is_absent_everywhere_and_frees_its_slot(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 1).await.unwrap();

    // moto never deletes expired items, like DynamoDB in the days after a TTL: the item is
    // still stored, and the store must treat it as gone.
    h.clock.advance(LIFETIME);

    assert_eq!(h.store.get_session(&session.id).await.unwrap(), None);
    let page = h
        .store
        .list_sessions(&user("alice"), &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert!(page.items.is_empty());
    let closed = session.close(h.now()).unwrap();
    let err = h.store.update_session(&session, &closed).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    h.store
        .create_session(&h.session("alice"), 1)
        .await
        .unwrap();
}
