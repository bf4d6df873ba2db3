//! Connect tickets: issued for a session, spent once at the WebSocket door, refused when
//! expired, forged or meant for the other transport.

use std::time::Duration;

use super::{Harness, TICKET_TTL};
use crate::clock::Clock as _;
use crate::domain::{EventId, Transport};
use crate::service::{Resume, ServiceError, SnapshotReason, TicketRefusal};

#[tokio::test]
async fn a_ticket_names_its_transports_url_and_expires_after_its_ttl() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let simulator = h.simulator(&alice, &session).await;

    let ws = h
        .service
        .issue_ticket(&alice, &session.id, Transport::Ws, None)
        .await
        .unwrap();
    let sse = h
        .service
        .issue_ticket(&alice, &session.id, Transport::Sse, None)
        .await
        .unwrap();

    assert_eq!(ws.expires_at, h.clock.now().plus(TICKET_TTL));
    assert!(
        ws.url.starts_with("ws://127.0.0.1:8091?ticket="),
        "{}",
        ws.url
    );
    assert!(
        sse.url.starts_with(&format!(
            "http://127.0.0.1:8090/v1/sessions/{}/stream?ticket=",
            session.id
        )),
        "{}",
        sse.url
    );
    assert_eq!(ws.simulator_id.as_ref(), Some(&simulator.id));
    assert!(ws.url.ends_with(&format!("&simulator_id={}", simulator.id)));
}

#[tokio::test]
async fn a_websocket_ticket_admits_one_connection_and_is_refused_as_used_after() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let ticket = h
        .service
        .issue_ticket(&alice, &session.id, Transport::Ws, None)
        .await
        .unwrap();

    let first = h.authorizer.admit_connect(&ticket.token).await.unwrap();
    let second = h.authorizer.admit_connect(&ticket.token).await;

    assert_eq!(first.session_id, session.id);
    assert_eq!(first.user, alice.user);
    assert!(
        matches!(
            second,
            Err(ServiceError::TicketRefused(TicketRefusal::AlreadyUsed))
        ),
        "{second:?}"
    );
}

#[tokio::test]
async fn a_ticket_is_refused_for_what_is_wrong_with_it() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let issue = |transport| h.service.issue_ticket(&alice, &session.id, transport, None);
    let expired = issue(Transport::Ws).await.unwrap().token;
    h.clock.advance(TICKET_TTL + Duration::from_secs(1));
    let sse = issue(Transport::Sse).await.unwrap().token;
    let fresh = issue(Transport::Ws).await.unwrap().token;
    // Another deployment's key, same claims and clock.
    let other = Harness::new();
    other.clock.advance(TICKET_TTL + Duration::from_secs(1));
    let foreign = other
        .service
        .issue_ticket(&alice, &other.session(&alice).await.id, Transport::Ws, None)
        .await
        .unwrap()
        .token;

    let cases = [
        (expired.as_str(), TicketRefusal::Expired),
        (sse.as_str(), TicketRefusal::WrongTransport),
        (foreign.as_str(), TicketRefusal::Invalid),
        ("not.a.ticket", TicketRefusal::Invalid),
        ("", TicketRefusal::Invalid),
    ];
    for (token, refusal) in cases {
        let outcome = h.authorizer.admit_connect(token).await;
        assert!(
            matches!(&outcome, Err(ServiceError::TicketRefused(r)) if *r == refusal),
            "{refusal:?}: {outcome:?}"
        );
    }
    assert!(h.authorizer.admit_connect(&fresh).await.is_ok());
}

#[tokio::test]
async fn a_ticket_for_a_session_closed_since_is_refused_and_stays_unspent() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let ticket = h
        .service
        .issue_ticket(&alice, &session.id, Transport::Ws, None)
        .await
        .unwrap();
    h.service.close_session(&alice, &session.id).await.unwrap();

    let refused = h.authorizer.admit_connect(&ticket.token).await;

    assert!(
        matches!(refused, Err(ServiceError::SessionClosed { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_deployment_without_ticket_keys_answers_not_configured_at_both_ends() {
    let h = Harness::without_ticket_keys();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;

    let issue = h
        .service
        .issue_ticket(&alice, &session.id, Transport::Ws, None)
        .await;
    let admit = h.authorizer.admit_connect("anything").await;

    assert!(
        matches!(issue, Err(ServiceError::NotConfigured { .. })),
        "{issue:?}"
    );
    assert!(
        matches!(admit, Err(ServiceError::NotConfigured { .. })),
        "{admit:?}"
    );
}

#[tokio::test]
async fn a_reconnect_predicts_replay_or_says_why_a_snapshot() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let simulator = h.simulator(&alice, &session).await;
    let backend_id = simulator.backend_id.clone().unwrap();
    let at = |epoch, sequence| EventId { epoch, sequence };
    let snapshot = |reason| Resume::Snapshot { reason };
    let cases = [
        (None, snapshot(SnapshotReason::NoLastEventId)),
        (Some(at(1, 0)), Resume::Replay { from: at(1, 0) }),
        (Some(at(2, 0)), snapshot(SnapshotReason::EpochChanged)),
        (Some(at(1, 5)), snapshot(SnapshotReason::UnknownPosition)),
    ];

    for (last, resume) in cases {
        let answer = h
            .service
            .reconnect(&alice, &session.id, Transport::Sse, last, None)
            .await
            .unwrap();
        assert_eq!(answer.resume, resume, "{last:?}");
        if let Some(last) = last {
            assert!(
                answer
                    .ticket
                    .url
                    .ends_with(&format!("&last_event_id={last}"))
            );
        }
    }
    h.backend.forget(&backend_id);
    let unverified = h
        .service
        .reconnect(&alice, &session.id, Transport::Ws, Some(at(1, 0)), None)
        .await
        .unwrap();
    assert_eq!(
        unverified.resume,
        Resume::Snapshot {
            reason: SnapshotReason::PositionUnverified
        }
    );
}
