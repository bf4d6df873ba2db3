//! The store's part of a failover of sessions' home region (`docs/multi-region.md`): listing
//! the sessions homed in a region, and taking one over by a write fenced on its home and epoch.

use std::collections::BTreeSet;
use std::time::Duration;

use session_core::domain::{
    PageRequest, RegionName, Session, SessionId, Simulator, SimulatorStatus,
};
use session_core::store::{HomeMove, REGION_FAILOVER_REASON, StoreError, Takeover};

use crate::helpers::{Harness, quotas};

fn region(name: &str) -> RegionName {
    RegionName::parse("region", name).unwrap()
}

/// A session of `owner` homed in `home` (`None`: no `home_region`, the primary).
fn homed(h: &Harness, owner: &str, home: Option<&str>) -> Session {
    Session {
        home_region: home.map(region),
        ..h.session(owner)
    }
}

/// Every id `sessions_homed_in` lists for `home`, reading pages of two.
async fn listed(h: &Harness, home: &str, primary: &str) -> BTreeSet<SessionId> {
    let (home, primary) = (region(home), region(primary));
    let mut page = PageRequest {
        limit: 2,
        cursor: None,
    };
    let mut ids = BTreeSet::new();
    loop {
        let found = h
            .store
            .sessions_homed_in(&home, &primary, &page)
            .await
            .unwrap();
        assert!(found.items.len() <= 2);
        for session in found.items {
            assert!(
                ids.insert(session.id.clone()),
                "listed twice: {}",
                session.id
            );
        }
        match found.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => return ids,
        }
    }
}

pub async fn sessions_homed_in_a_region_are_listed_and_unmarked_ones_are_the_primarys(h: Harness) {
    let mut in_a = BTreeSet::new();
    for owner in ["alice", "bob", "carol"] {
        let session = homed(&h, owner, Some("a"));
        h.store.create_session(&session, 10).await.unwrap();
        in_a.insert(session.id);
    }
    let unmarked = homed(&h, "dave", None);
    let in_b = homed(&h, "erin", Some("b"));
    for session in [&unmarked, &in_b] {
        h.store.create_session(session, 10).await.unwrap();
    }
    // An expired session of a is no longer anyone's to move.
    let expired = Session {
        expires_at: h.now().plus(Duration::from_secs(1)),
        ..homed(&h, "frank", Some("a"))
    };
    h.store.create_session(&expired, 10).await.unwrap();
    h.clock.advance(Duration::from_secs(2));

    assert_eq!(listed(&h, "a", "c").await, in_a);
    in_a.insert(unmarked.id.clone());
    assert_eq!(listed(&h, "a", "a").await, in_a);
    assert_eq!(listed(&h, "b", "a").await, BTreeSet::from([in_b.id]));
    assert_eq!(listed(&h, "c", "a").await, BTreeSet::new());
}

pub async fn taking_over_a_home_moves_it_once_fails_its_simulators_and_fences_the_old_home(
    h: Harness,
) {
    let (a, b, c) = (region("a"), region("b"), region("c"));
    let session = homed(&h, "alice", Some("a"));
    h.store.create_session(&session, 10).await.unwrap();
    let starting = h.simulator(&session);
    let stopping = h.simulator(&session);
    for simulator in [&starting, &stopping] {
        h.store
            .create_simulator(simulator, &session.owner, quotas(4))
            .await
            .unwrap();
    }
    let stopping_now = stopping
        .transition(SimulatorStatus::Stopping, None, h.now())
        .unwrap();
    h.store
        .update_simulator(&stopping, &stopping_now)
        .await
        .unwrap();
    let step = HomeMove {
        from: &a,
        epoch: 1,
        to: &b,
        primary: &a,
    };

    let outcome = h.store.take_over_home(&session.id, &step).await.unwrap();

    assert_eq!(
        outcome,
        Takeover::Moved {
            epoch: 2,
            failed_simulators: 1
        }
    );
    let moved = h.store.get_session(&session.id).await.unwrap().unwrap();
    assert_eq!(
        (moved.home_region.as_ref(), moved.home_epoch),
        (Some(&b), 2)
    );
    let simulators = h.store.list_simulators(&session.id).await.unwrap();
    let state = |s: &Simulator| (s.status, s.reason.clone());
    assert_eq!(
        simulators.iter().map(state).collect::<Vec<_>>(),
        vec![
            (
                SimulatorStatus::Failed,
                Some(REGION_FAILOVER_REASON.to_owned())
            ),
            (SimulatorStatus::Stopping, None),
        ]
    );
    // The old home's writer, holding the session as it read it, is fenced off.
    let closed = session.close(h.now()).unwrap();
    let err = h.store.update_session(&session, &closed).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    // A re-run moves nothing; a move from a stale home names what it found.
    assert_eq!(
        h.store.take_over_home(&session.id, &step).await.unwrap(),
        Takeover::AlreadyMoved { epoch: 2 }
    );
    let elsewhere = HomeMove { to: &c, ..step };
    assert_eq!(
        h.store
            .take_over_home(&session.id, &elsewhere)
            .await
            .unwrap(),
        Takeover::Conflict {
            region: Some(b.clone()),
            epoch: 2
        }
    );
    assert_eq!(
        h.store
            .take_over_home(&SessionId::generate(), &step)
            .await
            .unwrap(),
        Takeover::Gone
    );
    // The new home writes it.
    let closed = moved.close(h.now()).unwrap();
    h.store.update_session(&moved, &closed).await.unwrap();
}

pub async fn a_session_without_a_home_region_is_taken_over_from_the_primary_at_epoch_one(
    h: Harness,
) {
    let (a, b) = (region("a"), region("b"));
    let unmarked = homed(&h, "alice", None);
    h.store.create_session(&unmarked, 10).await.unwrap();
    let from_b = HomeMove {
        from: &b,
        epoch: 1,
        to: &a,
        primary: &a,
    };
    assert_eq!(
        h.store.take_over_home(&unmarked.id, &from_b).await.unwrap(),
        Takeover::AlreadyMoved { epoch: 1 }
    );

    let from_a = HomeMove {
        from: &a,
        epoch: 1,
        to: &b,
        primary: &a,
    };
    let outcome = h.store.take_over_home(&unmarked.id, &from_a).await.unwrap();

    assert_eq!(
        outcome,
        Takeover::Moved {
            epoch: 2,
            failed_simulators: 0
        }
    );
    let moved = h.store.get_session(&unmarked.id).await.unwrap().unwrap();
    assert_eq!((moved.home_region, moved.home_epoch), (Some(b), 2));
    let closed = unmarked.close(h.now()).unwrap();
    let err = h
        .store
        .update_session(&unmarked, &closed)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
}
