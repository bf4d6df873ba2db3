//! Health: the simulator service's failures degrade it, each with its word; a store that does
//! not answer takes it down.

use std::sync::Arc;

use super::{Call, FakeBackend, Harness, START, parts};
use crate::backend::BackendError;
use crate::clock::ManualClock;
use crate::config::StoreSettings;
use crate::resilience::BreakerState;
use crate::service::{DependencyState, HealthStatus, SessionService};
use crate::store::DynamoStore;

#[tokio::test]
async fn health_is_degraded_by_a_failing_simulator_service_and_says_how_it_fails() {
    let cases = [
        (None, BreakerState::Closed, HealthStatus::Ok, None),
        (
            Some(BackendError::Refused("no".into())),
            BreakerState::Closed,
            HealthStatus::Ok,
            None,
        ),
        (
            Some(BackendError::Unavailable("timeout".into())),
            BreakerState::Closed,
            HealthStatus::Degraded,
            Some("unavailable"),
        ),
        (
            Some(BackendError::CircuitOpen("open".into())),
            BreakerState::HalfOpen,
            HealthStatus::Degraded,
            Some("circuit_open"),
        ),
        (
            None,
            BreakerState::Open,
            HealthStatus::Degraded,
            Some("circuit_open"),
        ),
    ];

    for (failure, breaker, status, detail) in cases {
        let h = Harness::new();
        if let Some(error) = failure.clone() {
            h.backend.fail(Call::Probe, error);
        }
        h.backend.set_breaker(breaker);

        let health = h.service.health().await;

        let case = format!("{failure:?} {breaker:?}");
        assert_eq!(health.status, status, "{case}");
        let [store, backend] = health.dependencies.as_slice() else {
            panic!("two dependencies: {health:?}");
        };
        assert_eq!((store.name, store.state), ("store", DependencyState::Ok));
        assert_eq!(backend.name, "simulator_service");
        assert_eq!(backend.detail, detail, "{case}");
        let probed = usize::from(breaker != BreakerState::Open);
        assert_eq!(h.backend.calls(Call::Probe), probed, "{case}");
    }
}

#[tokio::test]
async fn health_is_down_when_the_store_does_not_answer() {
    // A DynamoDB endpoint nothing listens on: every call is refused at connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let clock = ManualClock::new(START);
    let client = DynamoStore::local_client(
        &format!("http://127.0.0.1:{port}"),
        &StoreSettings::default(),
        None,
    );
    let store = Arc::new(DynamoStore::new(
        client,
        "sessions",
        Arc::new(clock.clone()),
    ));
    let service = SessionService::new(parts(store, &clock, Arc::new(FakeBackend::new())));

    let health = service.health().await;

    assert_eq!(health.status, HealthStatus::Down);
    let store = &health.dependencies[0];
    assert_eq!(
        (store.name, store.state),
        ("store", DependencyState::Failing)
    );
    assert!(
        matches!(store.detail, Some("error" | "timeout")),
        "{:?}",
        store.detail
    );
    assert_eq!(health.dependencies[1].state, DependencyState::Ok);
}
