//! Simulators: start, read (reconciled with the backend), book, stop; and how each class of
//! backend failure ends.

use super::{Call, Harness, PATIENCE, new_simulator};
use crate::backend::BackendError;
use crate::clock::Clock as _;
use crate::config::Limits;
use crate::domain::{Simulator, SimulatorStatus, Symbol};
use crate::service::ServiceError;
use crate::store::{Quota, SimulatorQuotas, SimulatorStore as _};

fn btc() -> Symbol {
    Symbol::parse("symbol", "BTC-USD").unwrap()
}

#[tokio::test]
async fn a_started_simulator_runs_under_the_backends_id_named_after_its_own() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;

    let simulator = h.simulator(&alice, &session).await;
    let read = h
        .service
        .get_simulator(&alice, &session.id, &simulator.id)
        .await
        .unwrap();

    assert_eq!(simulator.status, SimulatorStatus::Running);
    assert_eq!(
        simulator.backend_id.as_deref(),
        Some(format!("bk-{}", simulator.id).as_str()),
        "the service's id is the backend's idempotency token"
    );
    assert_eq!(read, simulator);
}

#[tokio::test]
async fn a_start_the_backend_fails_ends_failed_with_a_client_safe_reason_per_failure_class() {
    let cases = [
        (
            BackendError::Refused("unknown symbol".into()),
            "the simulator service refused the start: unknown symbol",
        ),
        (
            BackendError::NotFound("no such market".into()),
            "the simulator service refused the start: no such market",
        ),
        (
            BackendError::Unavailable("connection refused to 10.0.0.7".into()),
            "the simulator service was unavailable; start a new simulator to retry",
        ),
        (
            BackendError::CircuitOpen("breaker open".into()),
            "the simulator service was unavailable; start a new simulator to retry",
        ),
    ];
    for (error, reason) in cases {
        let h = Harness::new();
        let alice = h.caller("alice");
        let session = h.session(&alice).await;
        h.backend.fail(Call::Start, error.clone());

        let simulator = h.simulator(&alice, &session).await;

        assert_eq!(simulator.status, SimulatorStatus::Failed, "{error:?}");
        assert_eq!(simulator.reason.as_deref(), Some(reason), "{error:?}");
        assert_eq!(simulator.backend_id, None);
    }
}

#[tokio::test]
async fn a_failed_start_does_not_hold_a_simulator_slot() {
    let h = Harness::with_limits(Limits {
        simulators_per_session: 1,
        ..Limits::default()
    });
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    h.backend
        .fail(Call::Start, BackendError::Unavailable("down".into()));
    h.simulator(&alice, &session).await;
    h.backend.recover(Call::Start);

    let retried = h.simulator(&alice, &session).await;
    let over = h
        .service
        .start_simulator(&alice, &session.id, new_simulator())
        .await;

    assert_eq!(retried.status, SimulatorStatus::Running);
    assert!(
        matches!(
            over,
            Err(ServiceError::QuotaExceeded {
                quota: Quota::SimulatorsPerSession,
                limit: 1
            })
        ),
        "{over:?}"
    );
}

#[tokio::test]
async fn reading_a_simulator_adopts_what_the_backend_reports_and_survives_its_outage() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let crashed = h.simulator(&alice, &session).await;
    let lost = h.simulator(&alice, &session).await;
    let read = async |s: &Simulator| h.service.get_simulator(&alice, &session.id, &s.id).await;

    h.backend
        .fail(Call::Get, BackendError::Unavailable("timeout".into()));
    let during_outage = read(&crashed).await.unwrap();
    h.backend.recover(Call::Get);
    h.backend.set_status(
        crashed.backend_id.as_deref().unwrap(),
        SimulatorStatus::Failed,
        Some("generator panicked"),
    );
    h.backend.forget(lost.backend_id.as_deref().unwrap());
    let crashed_now = read(&crashed).await.unwrap();
    let lost_now = read(&lost).await.unwrap();

    assert_eq!(
        during_outage, crashed,
        "an outage leaves the record as it is"
    );
    assert_eq!(crashed_now.status, SimulatorStatus::Failed);
    assert_eq!(crashed_now.reason.as_deref(), Some("generator panicked"));
    assert_eq!(lost_now.status, SimulatorStatus::Failed);
    assert_eq!(
        lost_now.reason.as_deref(),
        Some("the simulator service no longer knows this simulator")
    );
}

#[tokio::test]
async fn stopping_is_idempotent_and_a_stop_the_backend_cannot_do_yet_stays_stopping() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let simulator = h.simulator(&alice, &session).await;
    let stop = || h.service.stop_simulator(&alice, &session.id, &simulator.id);

    h.backend
        .fail(Call::Stop, BackendError::Unavailable("timeout".into()));
    let refused = stop().await;
    let meanwhile = h
        .store
        .get_simulator(&session.id, &simulator.id)
        .await
        .unwrap()
        .unwrap();
    h.backend.recover(Call::Stop);
    let settled_by_a_read = h
        .service
        .get_simulator(&alice, &session.id, &simulator.id)
        .await
        .unwrap();
    let again = stop().await.unwrap();

    assert!(
        matches!(
            refused,
            Err(ServiceError::Backend(BackendError::Unavailable(_)))
        ),
        "{refused:?}"
    );
    assert_eq!(meanwhile.status, SimulatorStatus::Stopping);
    assert_eq!(settled_by_a_read.status, SimulatorStatus::Stopped);
    assert_eq!(again, settled_by_a_read);
    assert_eq!(h.backend.calls(Call::Stop), 2);
}

#[tokio::test]
async fn a_start_abandoned_half_way_is_completed_by_a_read_once_its_patience_has_run_out() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    // What a request that died between recording the start and asking the backend leaves.
    let abandoned = Simulator::starting(&session, new_simulator(), h.clock.now());
    h.store
        .create_simulator(
            &abandoned,
            &session.owner,
            SimulatorQuotas::of(&Limits::default()),
        )
        .await
        .unwrap();
    let read = || h.service.get_simulator(&alice, &session.id, &abandoned.id);

    h.clock.advance(PATIENCE);
    let in_flight = read().await.unwrap();
    h.clock.advance(PATIENCE);
    let completed = read().await.unwrap();

    assert_eq!(in_flight.status, SimulatorStatus::Starting);
    assert_eq!(h.backend.calls(Call::Start), 1);
    assert_eq!(completed.status, SimulatorStatus::Running);
    assert_eq!(
        completed.backend_id.as_deref(),
        Some(format!("bk-{}", abandoned.id).as_str())
    );
}

#[tokio::test]
async fn a_book_is_read_from_a_running_simulator_only() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    let simulator = h.simulator(&alice, &session).await;
    let book = |symbol: Symbol| {
        let (h, alice, session, simulator) = (&h, &alice, &session, &simulator);
        async move {
            h.service
                .simulator_book(alice, &session.id, &simulator.id, &symbol)
                .await
        }
    };

    let running = book(btc()).await;
    let other_symbol = book(Symbol::parse("symbol", "ETH-USD").unwrap()).await;
    h.backend
        .fail(Call::Book, BackendError::Unavailable("timeout".into()));
    let outage = book(btc()).await;
    h.backend.recover(Call::Book);
    h.service
        .stop_simulator(&alice, &session.id, &simulator.id)
        .await
        .unwrap();
    let stopped = book(btc()).await;

    assert_eq!(running.unwrap().symbol, "BTC-USD");
    assert!(
        matches!(
            other_symbol,
            Err(ServiceError::NotFound {
                entity: "symbol",
                ..
            })
        ),
        "{other_symbol:?}"
    );
    assert!(
        matches!(
            outage,
            Err(ServiceError::Backend(BackendError::Unavailable(_)))
        ),
        "{outage:?}"
    );
    assert!(
        matches!(
            stopped,
            Err(ServiceError::SimulatorNotRunning {
                status: "stopped",
                ..
            })
        ),
        "{stopped:?}"
    );
}

#[tokio::test]
async fn a_simulator_of_another_session_is_not_found() {
    let h = Harness::new();
    let alice = h.caller("alice");
    let one = h.session(&alice).await;
    let other = h.session(&alice).await;
    let simulator = h.simulator(&alice, &one).await;

    let read = h
        .service
        .get_simulator(&alice, &other.id, &simulator.id)
        .await;

    assert!(
        matches!(
            read,
            Err(ServiceError::NotFound {
                entity: "simulator",
                ..
            })
        ),
        "{read:?}"
    );
}
