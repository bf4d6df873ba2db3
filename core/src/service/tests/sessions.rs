//! Sessions: create under the quota, read, close, and what a closed or expired one answers.

use super::{Call, Harness, START, new_simulator};
use crate::config::Limits;
use crate::domain::{NewSession, PageRequest, SessionStatus, SimulatorStatus, Transport};
use crate::service::ServiceError;
use crate::store::Quota;

#[tokio::test]
async fn a_new_session_is_active_for_the_configured_lifetime() {
    let h = Harness::new();
    let alice = h.caller("alice");

    let session = h.session(&alice).await;

    assert_eq!(session.status, SessionStatus::Active);
    assert_eq!(session.owner, alice.user);
    assert_eq!(session.created_at, START);
    assert_eq!(
        session.expires_at,
        START.plus(Limits::default().session_lifetime_secs)
    );
    let detail = h.service.session_detail(&alice, &session.id).await.unwrap();
    assert_eq!(detail.session, session);
    assert!(detail.simulators.is_empty());
    assert_eq!(detail.connections, 0);
}

#[tokio::test]
async fn creating_beyond_the_open_sessions_quota_is_refused_and_closing_one_frees_a_slot() {
    let h = Harness::with_limits(Limits {
        sessions_per_user: 2,
        ..Limits::default()
    });
    let alice = h.caller("alice");
    let first = h.session(&alice).await;
    h.session(&alice).await;

    let refused = h
        .service
        .create_session(&alice, NewSession::default())
        .await;
    let other_user = h
        .service
        .create_session(&h.caller("bob"), NewSession::default())
        .await;
    h.service.close_session(&alice, &first.id).await.unwrap();
    let after_close = h
        .service
        .create_session(&alice, NewSession::default())
        .await;

    assert!(
        matches!(
            refused,
            Err(ServiceError::QuotaExceeded {
                quota: Quota::SessionsPerUser,
                limit: 2
            })
        ),
        "{refused:?}"
    );
    assert!(other_user.is_ok(), "the quota is per user: {other_user:?}");
    assert!(after_close.is_ok(), "{after_close:?}");
}

#[tokio::test]
async fn another_users_session_is_answered_as_missing_by_every_use_case() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let mallory = h.caller("mallory");
    let session = h.session(&alice).await;

    let detail = h.service.session_detail(&mallory, &session.id).await;
    let close = h.service.close_session(&mallory, &session.id).await;
    let start = h
        .service
        .start_simulator(&mallory, &session.id, new_simulator())
        .await;
    let ticket = h
        .service
        .issue_ticket(&mallory, &session.id, Transport::Ws, None)
        .await;
    let listed = h
        .service
        .list_sessions(&mallory, &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();

    for outcome in [detail.map(|_| ()), close.map(|_| ()), start.map(|_| ())] {
        assert!(
            matches!(
                outcome,
                Err(ServiceError::NotFound {
                    entity: "session",
                    ..
                })
            ),
            "{outcome:?}"
        );
    }
    assert!(
        matches!(
            ticket,
            Err(ServiceError::NotFound {
                entity: "session",
                ..
            })
        ),
        "{ticket:?}"
    );
    assert!(listed.items.is_empty());
    let still = h.service.session_detail(&alice, &session.id).await.unwrap();
    assert_eq!(still.session.status, SessionStatus::Active);
}

#[tokio::test]
async fn closing_a_session_stops_its_simulators_and_closing_it_again_changes_nothing() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let simulator = h.simulator(&alice, &session).await;

    let closed = h.service.close_session(&alice, &session.id).await.unwrap();
    let again = h.service.close_session(&alice, &session.id).await.unwrap();

    assert_eq!(closed.status, SessionStatus::Closed);
    assert_eq!(closed.closed_at, Some(START));
    assert_eq!(again, closed, "a second close returns the session as it is");
    assert_eq!(h.backend.calls(Call::Stop), 1);
    let detail = h.service.session_detail(&alice, &session.id).await.unwrap();
    assert_eq!(detail.simulators.len(), 1);
    assert_eq!(detail.simulators[0].id, simulator.id);
    assert_eq!(detail.simulators[0].status, SimulatorStatus::Stopped);
}

#[tokio::test]
async fn a_closed_session_refuses_new_simulators_and_tickets_as_closed() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    h.service.close_session(&alice, &session.id).await.unwrap();

    let start = h
        .service
        .start_simulator(&alice, &session.id, new_simulator())
        .await;
    let ticket = h
        .service
        .issue_ticket(&alice, &session.id, Transport::Sse, None)
        .await;

    assert!(
        matches!(start, Err(ServiceError::SessionClosed { .. })),
        "{start:?}"
    );
    assert!(
        matches!(ticket, Err(ServiceError::SessionClosed { .. })),
        "{ticket:?}"
    );
    assert_eq!(h.backend.calls(Call::Start), 0);
}

#[tokio::test]
async fn a_session_past_its_lifetime_is_gone_for_its_owner_too() {
    let h = Harness::with_limits(Limits {
        session_lifetime_secs: std::time::Duration::from_secs(60),
        ..Limits::default()
    });
    let alice = h.caller("alice");
    let session = h.session(&alice).await;

    h.clock.advance(std::time::Duration::from_secs(59));
    let before = h.service.session_detail(&alice, &session.id).await;
    h.clock.advance(std::time::Duration::from_secs(1));
    let after = h.service.session_detail(&alice, &session.id).await;
    let listed = h
        .service
        .list_sessions(&alice, &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();

    assert!(before.is_ok(), "{before:?}");
    assert!(
        matches!(after, Err(ServiceError::NotFound { .. })),
        "{after:?}"
    );
    assert!(listed.items.is_empty());
}

#[tokio::test]
async fn sessions_are_listed_newest_first_a_page_at_a_time() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(h.session(&alice).await.id);
    }

    let first = h
        .service
        .list_sessions(&alice, &PageRequest::parse(Some(2), None).unwrap())
        .await
        .unwrap();
    let cursor = first.next_cursor.as_ref().expect("a second page").encode();
    let second = h
        .service
        .list_sessions(&alice, &PageRequest::parse(Some(2), Some(&cursor)).unwrap())
        .await
        .unwrap();

    let ids = |page: &crate::domain::Page<crate::domain::Session>| {
        page.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), vec![created[2].clone(), created[1].clone()]);
    assert_eq!(ids(&second), vec![created[0].clone()]);
    assert!(second.next_cursor.is_none());
}
