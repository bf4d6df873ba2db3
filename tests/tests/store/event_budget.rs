//! The per-user budget of simulator events per second: the sum of `events_per_second` of a
//! user's simulators that are not stopped or failed, over every usable session of theirs.

use std::sync::Arc;
use std::time::Duration;

use session_core::domain::{Session, Simulator, SimulatorStatus};
use session_core::store::{Quota, SharedStore, SimulatorQuotas, StoreError};
use tokio::task::JoinSet;

use crate::helpers::{Harness, LIFETIME};

/// The budget of every case: small, so a few simulators reach it.
const BUDGET: u32 = 100;

const QUOTAS: SimulatorQuotas = SimulatorQuotas {
    max_active: 16,
    max_events_per_second: BUDGET,
};

fn is_over_budget(result: &Result<(), StoreError>) -> bool {
    matches!(
        result,
        Err(StoreError::QuotaExceeded {
            quota: Quota::EventsPerSecondPerUser,
            limit: BUDGET,
        })
    )
}

impl Harness {
    async fn open(&self, owner: &str) -> Session {
        let session = self.session(owner);
        self.store.create_session(&session, 10).await.unwrap();
        session
    }

    async fn start(&self, session: &Session, rate: u32) -> (Simulator, Result<(), StoreError>) {
        let simulator = self.simulator_at(session, rate);
        let result = self
            .store
            .create_simulator(&simulator, &session.owner, QUOTAS)
            .await;
        (simulator, result)
    }

    /// Moves `simulator` through `to`, one state at a time.
    async fn advance_through(&self, simulator: Simulator, to: &[SimulatorStatus]) -> Simulator {
        let mut current = simulator;
        for status in to {
            let next = current.transition(*status, None, self.now()).unwrap();
            self.store.update_simulator(&current, &next).await.unwrap();
            current = next;
        }
        current
    }
}

pub async fn starts_within_the_event_budget_pass_and_one_over_it_is_refused(h: Harness) {
    let first = h.open("alice").await;
    let second = h.open("alice").await;

    h.start(&first, 40).await.1.unwrap();
    h.start(&second, 40).await.1.unwrap();
    let over = h.start(&first, 30).await.1;
    let above_the_whole_budget = h.start(&h.open("carol").await, BUDGET + 1).await.1;
    h.start(&second, 20).await.1.unwrap();
    let after_the_last_that_fits = h.start(&first, 1).await.1;
    let bob = h.start(&h.open("bob").await, BUDGET).await.1;

    assert!(is_over_budget(&over), "{over:?}");
    assert!(
        is_over_budget(&above_the_whole_budget),
        "{above_the_whole_budget:?}"
    );
    assert!(
        is_over_budget(&after_the_last_that_fits),
        "{after_the_last_that_fits:?}"
    );
    bob.expect("another user has a budget of their own");
    let listed = h.store.list_simulators(&first.id).await.unwrap();
    assert_eq!(listed.len(), 1, "a refused start leaves no record");
}

pub async fn stopping_a_simulator_frees_its_events_per_second(h: Harness) {
    let session = h.open("alice").await;
    let (first, started) = h.start(&session, 60).await;
    started.unwrap();
    let running = h.advance_through(first, &[SimulatorStatus::Running]).await;

    let while_running = h.start(&session, 60).await.1;
    let stopping = h
        .advance_through(running, &[SimulatorStatus::Stopping])
        .await;
    let while_stopping = h.start(&session, 60).await.1;
    h.advance_through(stopping, &[SimulatorStatus::Stopped])
        .await;
    let (second, after_stop) = h.start(&session, 60).await;
    h.advance_through(second, &[SimulatorStatus::Failed]).await;
    let after_failure = h.start(&session, BUDGET).await.1;

    assert!(is_over_budget(&while_running), "{while_running:?}");
    assert!(
        is_over_budget(&while_stopping),
        "a stopping simulator still counts: {while_stopping:?}"
    );
    after_stop.expect("a stopped simulator frees its rate");
    after_failure.expect("a failed simulator frees its rate");
}

/// Starts `rates[i]` in one of `sessions` (alternating), all at once.
async fn race(
    store: &SharedStore,
    h: &Harness,
    sessions: &[Session],
    rates: &[u32],
) -> Vec<(u32, Result<(), StoreError>)> {
    let mut set = JoinSet::new();
    for (i, rate) in rates.iter().enumerate() {
        let session = &sessions[i % sessions.len()];
        let simulator = h.simulator_at(session, *rate);
        let owner = session.owner.clone();
        let store = Arc::clone(store);
        let rate = *rate;
        set.spawn(async move {
            let result = store.create_simulator(&simulator, &owner, QUOTAS).await;
            (rate, result)
        });
    }
    set.join_all().await
}

pub async fn concurrent_equal_starts_across_sessions_admit_exactly_what_fits(h: Harness) {
    let sessions = [h.open("alice").await, h.open("alice").await];

    let results = race(&h.store, &h, &sessions, &[30; 16]).await;

    let admitted = results.iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!(admitted, 3, "3 × 30 fit in {BUDGET}: {results:?}");
    assert!(results.iter().all(|(_, r)| r.is_ok() || is_over_budget(r)));
    let mut recorded = 0;
    for session in &sessions {
        recorded += h.store.list_simulators(&session.id).await.unwrap().len();
    }
    assert_eq!(recorded, 3, "no partial records");
}

pub async fn concurrent_unequal_starts_across_sessions_never_exceed_the_budget(h: Harness) {
    let sessions = [h.open("alice").await, h.open("alice").await];
    let rates: Vec<u32> = (0..16).map(|i| 5 + (i * 7) % 40).collect();

    let results = race(&h.store, &h, &sessions, &rates).await;

    let admitted: u32 = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(rate, _)| rate)
        .sum();
    assert!(admitted <= BUDGET, "{admitted}: {results:?}");
    // Nothing stopped during the race, so the sum only grew: a refused start did not fit even
    // in what was left at the end.
    for (rate, result) in &results {
        if result.is_err() {
            assert!(is_over_budget(result), "{result:?}");
            assert!(admitted + rate > BUDGET, "{rate} was refused: {results:?}");
        }
    }
}

pub async fn sessions_that_ended_with_running_simulators_no_longer_count(h: Harness) {
    // Closed with a simulator still running: it no longer counts...
    let closed = h.open("alice").await;
    let (orphan, started) = h.start(&closed, 80).await;
    started.unwrap();
    let orphan = h.advance_through(orphan, &[SimulatorStatus::Running]).await;
    h.store
        .update_session(&closed, &closed.close(h.now()).unwrap())
        .await
        .unwrap();
    let expiring = h.open("alice").await;
    h.start(&expiring, 50).await.1.unwrap();
    // ...and stopping it later does not free its rate a second time.
    h.advance_through(
        orphan,
        &[SimulatorStatus::Stopping, SimulatorStatus::Stopped],
    )
    .await;
    h.start(&expiring, 50).await.1.unwrap();
    let full = h.start(&expiring, 1).await.1;
    assert!(is_over_budget(&full), "{full:?}");

    // Expired with simulators still counted: a later session has the whole budget.
    h.clock.advance(LIFETIME + Duration::from_secs(1));
    let later = h.open("alice").await;
    h.start(&later, BUDGET).await.1.unwrap();
    let still_full = h.start(&later, 1).await.1;
    assert!(is_over_budget(&still_full), "{still_full:?}");
}
