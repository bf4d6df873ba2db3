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

#[tokio::test]
async fn a_ticket_is_admitted_only_in_the_region_that_minted_it_and_once_there() {
    use std::sync::Arc;

    use super::{FakeBackend, parts};
    use crate::auth::keys::{SigningKey, VerifyKeys};
    use crate::auth::{TicketSigner, TicketVerifier};
    use crate::clock::ManualClock;
    use crate::domain::RegionName;
    use crate::service::{
        ConnectAuthorizer, ServiceParts, SessionService, StreamCredential, StreamService,
    };
    use crate::store::InMemoryStore;

    // Regions a and b over one store (a global table without lag), the same ticket keys.
    let clock = ManualClock::new(super::START);
    let store = Arc::new(InMemoryStore::new(Arc::new(clock.clone())));
    let backend = Arc::new(FakeBackend::new());
    let key = SigningKey::generate("test-key").unwrap();
    let keys = VerifyKeys::of(&[&key]).unwrap();
    let in_region = |name: &str| {
        let region = Some(RegionName::parse("region", name).unwrap());
        ServiceParts {
            ticket_signer: Some(
                TicketSigner::new(key.clone(), TICKET_TTL).in_region(region.clone()),
            ),
            ticket_verifier: Some(TicketVerifier::new(keys.clone()).in_region(region)),
            ..parts(store.clone(), &clock, backend.clone())
        }
    };
    let a = in_region("a");
    let service_a = SessionService::new(a.clone());
    let (authorizer_a, authorizer_b) = (
        ConnectAuthorizer::new(&a),
        ConnectAuthorizer::new(&in_region("b")),
    );
    let streams_b = StreamService::new(&in_region("b"));
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = service_a
        .create_session(&alice, crate::domain::NewSession::default())
        .await
        .unwrap();
    let ws = service_a
        .issue_ticket(&alice, &session.id, Transport::Ws, None)
        .await
        .unwrap();
    let sse = service_a
        .issue_ticket(&alice, &session.id, Transport::Sse, None)
        .await
        .unwrap();

    let in_b = authorizer_b.admit_connect(&ws.token).await;
    let sse_in_b = streams_b
        .admit_stream(
            StreamCredential::Ticket(&sse.token),
            &session.id,
            None,
            None,
        )
        .await;
    let in_a = authorizer_a.admit_connect(&ws.token).await;
    let again_in_a = authorizer_a.admit_connect(&ws.token).await;

    for refused in [in_b.map(|_| ()), sse_in_b.map(|_| ())] {
        assert!(
            matches!(&refused, Err(ServiceError::TicketWrongRegion { region }) if region.as_str() == "a"),
            "{refused:?}"
        );
    }
    assert_eq!(in_a.unwrap().session_id, session.id);
    assert!(matches!(
        again_in_a,
        Err(ServiceError::TicketRefused(TicketRefusal::AlreadyUsed))
    ));
}

#[tokio::test]
async fn a_ticket_without_a_region_is_admitted_by_a_regional_authorizer() {
    use crate::auth::keys::{SigningKey, VerifyKeys};
    use crate::auth::{TicketSigner, TicketVerifier};
    use crate::domain::RegionName;
    use crate::service::{ConnectAuthorizer, ServiceParts};

    // Minted before the upgrade (no `reg`), presented to an upgraded region.
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let key = SigningKey::generate("test-key").unwrap();
    let (token, _) = TicketSigner::new(key.clone(), TICKET_TTL)
        .issue(&session.id, &alice, Transport::Ws, h.clock.now())
        .unwrap();
    let region = Some(RegionName::parse("region", "b").unwrap());
    let parts = ServiceParts {
        ticket_verifier: Some(
            TicketVerifier::new(VerifyKeys::of(&[&key]).unwrap()).in_region(region),
        ),
        ..super::parts(h.store.clone(), &h.clock, h.backend.clone())
    };

    let admitted = ConnectAuthorizer::new(&parts).admit_connect(&token).await;

    assert_eq!(admitted.unwrap().session_id, session.id);
}
