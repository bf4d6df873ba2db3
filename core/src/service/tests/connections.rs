//! WebSocket connections: opened under the session's quota, kept alive by heartbeats that
//! measure quality, and advised to reconnect as time passes or the serving streamer changes.

use std::time::Duration;

use super::Harness;
use crate::clock::Clock as _;
use crate::config::{Limits, WebSocketSettings};
use crate::domain::{
    ConnectionId, EventId, Heartbeat, ReconnectReason, Session, Transport, session_lease_name,
};
use crate::service::{Admission, ServiceError};
use crate::store::{LeaseStore as _, Quota};

/// A heartbeat `seq` sent at `client_time`, echoing the acknowledgement the client last saw
/// (`server_time`, and when on its own clock it saw it).
fn beat(seq: u64, client_time: i64, last_ack: Option<(i64, i64)>) -> Heartbeat {
    Heartbeat {
        seq,
        client_time,
        last_server_time: last_ack.map(|(server_time, _)| server_time),
        seen_at: last_ack.map(|(_, seen_at)| seen_at),
        events_received: None,
        last_event_id: None,
    }
}

/// A connection `id` of `session`, opened with a ticket the way `$connect` opens it.
async fn connect(h: &Harness, session: &Session, id: &str) -> Result<ConnectionId, ServiceError> {
    let alice = h.caller("alice");
    let ticket = h
        .service
        .issue_ticket(&alice, &session.id, Transport::Ws, None)
        .await?;
    let admission: Admission = h.authorizer.admit_connect(&ticket.token).await?;
    let id = ConnectionId::parse("connection_id", id).unwrap();
    h.connections.open_connection(&id, &admission, None).await?;
    Ok(id)
}

#[tokio::test]
async fn a_heartbeat_keeps_the_connection_alive_and_measures_the_round_trip() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let id = connect(&h, &session, "conn-1").await.unwrap();

    let first = h
        .connections
        .heartbeat(&session.id, &id, &beat(1, 1_000, None))
        .await
        .unwrap();
    // The client saw the first ack at its 1_000 and answers at its 31_000 (30_000 ms later); on
    // the server's clock 30_080 ms passed between the two: 80 ms were spent in flight.
    h.clock.advance(Duration::from_millis(30_080));
    let second = h
        .connections
        .heartbeat(
            &session.id,
            &id,
            &beat(2, 31_000, Some((first.server_time.unix_millis(), 1_000))),
        )
        .await
        .unwrap();

    let timeout = WebSocketSettings::default().heartbeat_timeout_secs;
    assert_eq!(first.expires_at, first.server_time.plus(timeout));
    assert_eq!(second.expires_at, h.clock.now().plus(timeout));
    assert_eq!(second.quality.rtt_ms, 80);
    assert_eq!(second.quality.heartbeats, 2);
    assert_eq!(second.quality.missed_heartbeats, 0);
    assert_eq!(second.advice, None);
    assert!(!second.stale);
}

#[tokio::test]
async fn heartbeats_missed_at_once_advise_reconnecting_for_poor_quality() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let id = connect(&h, &session, "conn-1").await.unwrap();
    let max_missed = WebSocketSettings::default().max_missed_heartbeats;
    h.connections
        .heartbeat(&session.id, &id, &beat(1, 0, None))
        .await
        .unwrap();

    h.clock.advance(Duration::from_secs(30));
    let after_gap = h
        .connections
        .heartbeat(&session.id, &id, &beat(2 + max_missed, 30_000, None))
        .await
        .unwrap();
    h.clock.advance(Duration::from_secs(30));
    let next = h
        .connections
        .heartbeat(&session.id, &id, &beat(3 + max_missed, 60_000, None))
        .await
        .unwrap();

    assert_eq!(after_gap.quality.missed_heartbeats, max_missed);
    assert_eq!(after_gap.advice, Some(ReconnectReason::PoorQuality));
    assert_eq!(next.quality.missed_heartbeats, max_missed, "counted once");
    assert_eq!(next.advice, None, "the gap is past");
}

#[tokio::test]
async fn a_repeated_heartbeat_is_stale_and_changes_nothing() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let id = connect(&h, &session, "conn-1").await.unwrap();
    let recorded = h
        .connections
        .heartbeat(&session.id, &id, &beat(5, 0, None))
        .await
        .unwrap();

    h.clock.advance(Duration::from_secs(10));
    let repeated = h
        .connections
        .heartbeat(&session.id, &id, &beat(5, 10_000, None))
        .await
        .unwrap();

    assert!(repeated.stale);
    assert_eq!(repeated.expires_at, recorded.expires_at, "not extended");
    assert_eq!(repeated.quality, recorded.quality);
}

#[tokio::test]
async fn a_connection_not_heard_from_within_the_timeout_is_gone() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let id = connect(&h, &session, "conn-1").await.unwrap();
    let timeout = WebSocketSettings::default().heartbeat_timeout_secs;

    h.clock
        .advance(timeout.saturating_sub(Duration::from_millis(1)));
    let just_in_time = h
        .connections
        .heartbeat(&session.id, &id, &beat(1, 0, None))
        .await;
    h.clock.advance(timeout);
    let too_late = h
        .connections
        .heartbeat(&session.id, &id, &beat(2, 0, None))
        .await;

    assert!(just_in_time.is_ok(), "{just_in_time:?}");
    assert!(
        matches!(
            too_late,
            Err(ServiceError::NotFound {
                entity: "connection",
                ..
            })
        ),
        "{too_late:?}"
    );
}

#[tokio::test]
async fn a_connection_nearing_the_gateways_two_hour_cap_is_advised_to_reconnect() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let id = connect(&h, &session, "conn-1").await.unwrap();
    let settings = WebSocketSettings::default();
    let advised_from = settings
        .max_connection_secs
        .saturating_sub(settings.reconnect_before_cap_secs);
    let step = Duration::from_secs(60);

    let mut seq = 0;
    let mut advice = Vec::new();
    let mut elapsed = Duration::ZERO;
    while elapsed <= advised_from {
        seq += 1;
        let ack = h
            .connections
            .heartbeat(&session.id, &id, &beat(seq, 0, None))
            .await
            .unwrap();
        advice.push((elapsed, ack.advice));
        h.clock.advance(step);
        elapsed += step;
    }

    for (at, advice) in advice {
        let expected = (at >= advised_from).then_some(ReconnectReason::ConnectionAge);
        assert_eq!(advice, expected, "at {at:?}");
    }
}

#[tokio::test]
async fn a_heartbeat_names_the_serving_streamer_and_advises_when_it_drains_or_changes() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let id = connect(&h, &session, "conn-1").await.unwrap();
    let lease_name = session_lease_name(&session.id);
    let ttl = Duration::from_secs(600);
    let lease = h
        .store
        .acquire_lease(&lease_name, "streamer-a", ttl)
        .await
        .unwrap();
    let heartbeat = async |seq| {
        h.connections
            .heartbeat(&session.id, &id, &beat(seq, 0, None))
            .await
    };

    let served = heartbeat(1).await.unwrap();
    h.store.mark_draining(&lease).await.unwrap();
    let draining = heartbeat(2).await.unwrap();
    h.store.release_lease(&lease).await.unwrap();
    h.store
        .acquire_lease(&lease_name, "streamer-b", ttl)
        .await
        .unwrap();
    let moved = heartbeat(3).await.unwrap();
    let settled = heartbeat(4).await.unwrap();

    assert_eq!(served.served_by.as_deref(), Some("streamer-a"));
    assert_eq!(served.advice, None, "a first sighting is no move");
    assert_eq!(draining.advice, Some(ReconnectReason::Draining));
    assert_eq!(moved.served_by.as_deref(), Some("streamer-b"));
    assert_eq!(moved.advice, Some(ReconnectReason::SessionMoved));
    assert_eq!(settled.advice, None);
}

#[tokio::test]
async fn a_heartbeat_reports_where_the_client_is_for_its_reconnect() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let id = connect(&h, &session, "conn-1").await.unwrap();

    let ack = h
        .connections
        .heartbeat(
            &session.id,
            &id,
            &Heartbeat {
                last_event_id: Some(EventId {
                    epoch: 3,
                    sequence: 41,
                }),
                ..beat(1, 0, None)
            },
        )
        .await
        .unwrap();

    assert_eq!(ack.last_event_id.as_deref(), Some("3-41"));
}

#[tokio::test]
async fn a_heartbeat_out_of_range_is_refused_naming_the_field_and_records_nothing() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let id = connect(&h, &session, "conn-1").await.unwrap();

    let refused = h
        .connections
        .heartbeat(&session.id, &id, &beat(0, 0, None))
        .await;
    let first = h
        .connections
        .heartbeat(&session.id, &id, &beat(1, 0, None))
        .await
        .unwrap();

    assert!(
        matches!(&refused, Err(ServiceError::Invalid(e)) if e.field == "seq"),
        "{refused:?}"
    );
    assert_eq!(first.quality.heartbeats, 1);
}

#[tokio::test]
async fn connections_beyond_the_sessions_quota_are_refused_and_closing_one_frees_a_slot() {
    let h = Harness::with_limits(Limits {
        connections_per_session: 2,
        ..Limits::default()
    });
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let first = connect(&h, &session, "conn-1").await.unwrap();
    connect(&h, &session, "conn-2").await.unwrap();

    let over = connect(&h, &session, "conn-3").await;
    let removed = h.connections.close_connection(&session.id, &first).await;
    let removed_again = h.connections.close_connection(&session.id, &first).await;
    let after = connect(&h, &session, "conn-3").await;

    assert!(
        matches!(
            over,
            Err(ServiceError::QuotaExceeded {
                quota: Quota::ConnectionsPerSession,
                limit: 2
            })
        ),
        "{over:?}"
    );
    assert!(removed.unwrap());
    assert!(!removed_again.unwrap(), "idempotent");
    assert!(after.is_ok(), "{after:?}");
}
