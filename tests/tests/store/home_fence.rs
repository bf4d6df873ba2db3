//! The home fence of session-item writes (`docs/multi-region.md`, "every conditional write
//! names its region"): a store of a region that is not the session's home changes neither the
//! session nor what counts on it (simulators), whatever the write, until a failover moves the
//! home there. WebSocket connections are regional instead: every region admits, counts and
//! sees its own, whatever the session's home.

use session_core::config::RegionSettings;
use std::time::Duration;

use session_core::domain::{Connection, RegionName, Session, SessionId, SimulatorStatus};
use session_core::store::{HomeFence, HomeMove, SharedStore, StoreError, Takeover};

use crate::helpers::{Harness, LIFETIME, quotas};

pub fn region(name: &str) -> RegionName {
    RegionName::parse("region", name).unwrap()
}

/// The store of region `this` of a deployment of regions `a` (the primary) and `b`.
pub fn store_of(h: &Harness, this: &str) -> SharedStore {
    let regions = RegionSettings {
        this: region(this),
        primary: Some(region("a")),
        apis: ["a", "b"]
            .map(|r| (region(r), format!("https://{r}.example")))
            .into(),
        simulators: std::collections::BTreeMap::new(),
    };
    let fence = HomeFence::from_settings(&regions);
    assert!(fence.is_some(), "two regions are a multi-region deployment");
    (h.in_region
        .as_ref()
        .expect("the adapter can be built per region"))(fence)
}

/// Whether `result` is the refusal naming `home` as the session's home.
/// `store` takes session `id` over from its first home, `a` (the primary), to `b`.
pub async fn take_over_from_a_to_b(store: &SharedStore, id: &SessionId) -> Takeover {
    let (from, to, primary) = (region("a"), region("b"), region("a"));
    let step = HomeMove {
        from: &from,
        epoch: 1,
        to: &to,
        primary: &primary,
    };
    store.take_over_home(id, &step).await.unwrap()
}

/// The stores of regions `a` and `b`, and a session of `owner` created in `a`, its home.
async fn homed_in_a(h: &Harness, owner: &str) -> (SharedStore, SharedStore, Session) {
    let (a, b) = (store_of(h, "a"), store_of(h, "b"));
    let session = Session {
        home_region: Some(region("a")),
        ..h.session(owner)
    };
    a.create_session(&session, 10).await.unwrap();
    (a, b, session)
}

fn homed_in<T: std::fmt::Debug>(result: Result<T, StoreError>, home: &str) {
    match result {
        Err(StoreError::NotHome { home_region, .. }) => assert_eq!(home_region.as_str(), home),
        other => panic!("expected the session to be homed in {home}: {other:?}"),
    }
}

pub async fn a_region_that_is_not_the_home_cannot_write_the_session_until_the_home_moves_there(
    h: Harness,
) {
    let (a, b, session) = homed_in_a(&h, "alice").await;
    let running = h.simulator(&session);
    a.create_simulator(&running, &session.owner, quotas(2))
        .await
        .unwrap();
    let in_a = h.connection(&session, "conn-in-a", LIFETIME);
    a.put_connection(&in_a, 2).await.unwrap();

    // Act: every kind of session-item write, from b.
    let started_in_b = h.simulator(&session);
    homed_in(
        b.create_simulator(&started_in_b, &session.owner, quotas(2))
            .await,
        "a",
    );
    let failed = running
        .transition(SimulatorStatus::Failed, Some("b".to_owned()), h.now())
        .unwrap();
    homed_in(b.update_simulator(&running, &failed).await, "a");
    assert!(
        !b.delete_connection(&session.id, &in_a.id).await.unwrap(),
        "a's connection is not b's to remove"
    );
    homed_in(
        b.update_session(&session, &session.close(h.now()).unwrap())
            .await,
        "a",
    );

    // Assert: nothing changed, and the counters still hold one slot each: the home fills
    // the second and is refused the third.
    assert_eq!(
        a.get_session(&session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        a.list_simulators(&session.id).await.unwrap(),
        vec![running.clone()]
    );
    assert_eq!(
        a.list_connections(&session.id).await.unwrap(),
        vec![in_a.clone()]
    );
    a.create_simulator(&h.simulator(&session), &session.owner, quotas(2))
        .await
        .unwrap();
    let full = a
        .create_simulator(&h.simulator(&session), &session.owner, quotas(2))
        .await;
    assert!(
        matches!(full, Err(StoreError::QuotaExceeded { .. })),
        "{full:?}"
    );
    a.put_connection(&h.connection(&session, "conn-2", LIFETIME), 2)
        .await
        .unwrap();
    let full = a
        .put_connection(&h.connection(&session, "conn-3", LIFETIME), 2)
        .await;
    assert!(
        matches!(full, Err(StoreError::QuotaExceeded { .. })),
        "{full:?}"
    );

    // Once the home moved to b, b writes it and a is fenced out.
    // Taken over by b's own store: the move and the failing of a's simulators are the writes
    // the fence lets through.
    let moved = take_over_from_a_to_b(&b, &session.id).await;
    assert!(
        matches!(
            moved,
            Takeover::Moved {
                epoch: 2,
                failed_simulators: 2
            }
        ),
        "{moved:?}"
    );
    b.create_simulator(&started_in_b, &session.owner, quotas(3))
        .await
        .unwrap();
    homed_in(
        a.create_simulator(&h.simulator(&session), &session.owner, quotas(9))
            .await,
        "b",
    );
}

pub async fn a_session_without_a_home_region_is_written_by_the_primary_only(h: Harness) {
    let (a, b) = (store_of(&h, "a"), store_of(&h, "b"));
    let session = h.session("alice");
    assert_eq!(session.home_region, None, "a bare session is the primary's");
    a.create_session(&session, 10).await.unwrap();

    let closed = session.close(h.now()).unwrap();
    homed_in(b.update_session(&session, &closed).await, "a");
    a.update_session(&session, &closed).await.unwrap();
}

fn is_full<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::QuotaExceeded { limit: 1, .. }) => {}
        other => panic!("expected the connections quota: {other:?}"),
    }
}

pub async fn each_region_admits_counts_and_sees_only_its_own_connections_whatever_the_home(
    h: Harness,
) {
    let (a, b, session) = homed_in_a(&h, "alice").await;
    let in_a = h.connection(&session, "conn-a", LIFETIME);
    a.put_connection(&in_a, 1).await.unwrap();

    // Act: b, which is not the home, admits a connection of its own, counted apart from a's.
    let in_b = h.connection(&session, "conn-b", LIFETIME);
    b.put_connection(&in_b, 1).await.unwrap();

    is_full(
        b.put_connection(&h.connection(&session, "conn-b2", LIFETIME), 1)
            .await,
    );
    is_full(
        a.put_connection(&h.connection(&session, "conn-a2", LIFETIME), 1)
            .await,
    );
    // Each region sees its own only: the ones its `@connections` endpoint reaches.
    let recorded_in_b = Connection {
        region: Some(region("b")),
        ..in_b.clone()
    };
    assert_eq!(
        a.list_connections(&session.id).await.unwrap(),
        vec![in_a.clone()]
    );
    assert_eq!(
        b.list_connections(&session.id).await.unwrap(),
        vec![recorded_in_b.clone()]
    );
    assert_eq!(b.get_connection(&session.id, &in_a.id).await.unwrap(), None);
    assert_eq!(a.get_connection(&session.id, &in_b.id).await.unwrap(), None);
    assert_eq!(
        b.get_connection(&session.id, &in_b.id).await.unwrap(),
        Some(recorded_in_b)
    );
    // The home's item is untouched by b.
    assert_eq!(
        a.get_session(&session.id).await.unwrap(),
        Some(session.clone())
    );

    // A session only b streams is found by b's streamers, not a's.
    let (_, _, other) = homed_in_a(&h, "bob").await;
    let dying = h.connection(&other, "conn-b-other", Duration::from_secs(60));
    b.put_connection(&dying, 1).await.unwrap();
    assert_eq!(
        a.sessions_with_connections().await.unwrap(),
        vec![session.id.clone()]
    );
    let mut in_b_sessions = b.sessions_with_connections().await.unwrap();
    in_b_sessions.sort();
    let mut expected = vec![session.id.clone(), other.id.clone()];
    expected.sort();
    assert_eq!(in_b_sessions, expected);

    // b removes its own and frees its slot; a's are not b's to remove.
    assert!(!b.delete_connection(&session.id, &in_a.id).await.unwrap());
    assert!(
        a.get_connection(&session.id, &in_a.id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(b.delete_connection(&session.id, &in_b.id).await.unwrap());
    b.put_connection(&h.connection(&session, "conn-b2", LIFETIME), 1)
        .await
        .unwrap();
    // A dead connection's slot in b is freed by b's next admission.
    h.clock.advance(Duration::from_secs(60));
    b.put_connection(&h.connection(&other, "conn-b-fresh", LIFETIME), 1)
        .await
        .unwrap();

    // A session closed in its home takes no more connections in b.
    a.update_session(&other, &other.close(h.now()).unwrap())
        .await
        .unwrap();
    let refused = b
        .put_connection(&h.connection(&other, "conn-b-late", LIFETIME), 9)
        .await;
    assert!(
        matches!(refused, Err(StoreError::SessionNotActive { .. })),
        "{refused:?}"
    );
}
