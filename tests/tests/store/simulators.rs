use std::time::Duration;

use session_core::domain::{Simulator, SimulatorStatus};
use session_core::store::{Quota, StoreError};

use crate::helpers::{Harness, LIFETIME, quotas};

pub async fn simulators_are_created_listed_and_transitioned(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let first = h.simulator(&session);
    let second = h.simulator(&session);
    h.store
        .create_simulator(&first, &session.owner, quotas(4))
        .await
        .unwrap();
    h.store
        .create_simulator(&second, &session.owner, quotas(4))
        .await
        .unwrap();

    let running = first
        .transition(SimulatorStatus::Running, None, h.now())
        .map(|s| Simulator {
            backend_id: Some("inst-1".into()),
            ..s
        })
        .unwrap();
    h.store.update_simulator(&first, &running).await.unwrap();

    assert_eq!(
        h.store.get_simulator(&session.id, &first.id).await.unwrap(),
        Some(running.clone())
    );
    assert_eq!(
        h.store.list_simulators(&session.id).await.unwrap(),
        vec![running, second]
    );
    let err = h
        .store
        .create_simulator(&first, &session.owner, quotas(4))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                entity: "simulator",
                ..
            }
        ),
        "{err:?}"
    );
}

pub async fn the_simulators_quota_counts_only_unfinished_ones(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let first = h.simulator(&session);
    h.store
        .create_simulator(&first, &session.owner, quotas(1))
        .await
        .unwrap();

    let err = h
        .store
        .create_simulator(&h.simulator(&session), &session.owner, quotas(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::QuotaExceeded {
                quota: Quota::SimulatorsPerSession,
                limit: 1
            }
        ),
        "{err:?}"
    );

    let stopping = first
        .transition(SimulatorStatus::Stopping, None, h.now())
        .unwrap();
    h.store.update_simulator(&first, &stopping).await.unwrap();
    let still_full = h
        .store
        .create_simulator(&h.simulator(&session), &session.owner, quotas(1))
        .await;
    assert!(
        matches!(still_full, Err(StoreError::QuotaExceeded { .. })),
        "stopping still counts"
    );

    let stopped = stopping
        .transition(SimulatorStatus::Stopped, None, h.now())
        .unwrap();
    h.store.update_simulator(&stopping, &stopped).await.unwrap();
    h.store
        .create_simulator(&h.simulator(&session), &session.owner, quotas(1))
        .await
        .unwrap();
}

pub async fn a_closed_or_expired_session_takes_no_simulators(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let closed = session.close(h.now()).unwrap();
    h.store.update_session(&session, &closed).await.unwrap();

    let err = h
        .store
        .create_simulator(&h.simulator(&session), &session.owner, quotas(4))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SessionNotActive { .. }),
        "{err:?}"
    );

    let other = h.session("alice");
    h.store.create_session(&other, 10).await.unwrap();
    let sim = h.simulator(&other);
    h.clock.advance(LIFETIME + Duration::from_secs(1));
    let err = h
        .store
        .create_simulator(&sim, &session.owner, quotas(4))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SessionNotActive { .. }),
        "{err:?}"
    );
}

pub async fn a_stale_writer_cannot_overwrite_a_newer_simulator(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let sim = h.simulator(&session);
    h.store
        .create_simulator(&sim, &session.owner, quotas(4))
        .await
        .unwrap();
    let running = sim
        .transition(SimulatorStatus::Running, None, h.now())
        .unwrap();
    h.store.update_simulator(&sim, &running).await.unwrap();

    let failed = sim
        .transition(SimulatorStatus::Failed, Some("late".into()), h.now())
        .unwrap();
    let err = h.store.update_simulator(&sim, &failed).await.unwrap_err();

    assert!(
        matches!(
            err,
            StoreError::Conflict {
                entity: "simulator",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        h.store.get_simulator(&session.id, &sim.id).await.unwrap(),
        Some(running)
    );
}
