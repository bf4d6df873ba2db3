//! Races: many tasks at once against one limit or one item; exactly the allowed number win.

use std::sync::Arc;
use std::time::Duration;

use session_core::domain::{
    EventId, IdempotencyClaim, IdempotencyKey, RequestFingerprint, SessionName, TicketId,
};
use session_core::store::{SharedStore, StoreError};
use tokio::task::JoinSet;

use crate::helpers::{Harness, quotas, user};

const RACERS: usize = 16;

/// Runs `RACERS` copies of `race` at once, each with the store and its index.
async fn race<T, F, Fut>(store: &SharedStore, race: F) -> Vec<Result<T, StoreError>>
where
    T: Send + 'static,
    F: Fn(SharedStore, usize) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..RACERS {
        set.spawn(race(Arc::clone(store), i));
    }
    set.join_all().await
}

fn winners<T>(results: &[Result<T, StoreError>]) -> usize {
    results.iter().filter(|r| r.is_ok()).count()
}

pub async fn concurrent_creates_against_the_sessions_quota_admit_exactly_the_quota(h: Harness) {
    let sessions: Vec<_> = (0..RACERS).map(|_| h.session("alice")).collect();
    let sessions = Arc::new(sessions);

    let results = race(&h.store, |store, i| {
        let sessions = Arc::clone(&sessions);
        async move { store.create_session(&sessions[i], 5).await }
    })
    .await;

    assert_eq!(winners(&results), 5);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::QuotaExceeded { .. }))
    );
}

pub async fn concurrent_simulator_starts_admit_exactly_the_quota(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let sims = Arc::new(
        (0..RACERS)
            .map(|_| h.simulator(&session))
            .collect::<Vec<_>>(),
    );

    let results = race(&h.store, |store, i| {
        let sims = Arc::clone(&sims);
        let owner = session.owner.clone();
        async move { store.create_simulator(&sims[i], &owner, quotas(3)).await }
    })
    .await;

    assert_eq!(winners(&results), 3);
    assert_eq!(h.store.list_simulators(&session.id).await.unwrap().len(), 3);
}

pub async fn concurrent_connects_admit_exactly_the_quota(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let conns = Arc::new(
        (0..RACERS)
            .map(|i| h.connection(&session, &format!("conn-{i}"), Duration::from_secs(60)))
            .collect::<Vec<_>>(),
    );

    let results = race(&h.store, |store, i| {
        let conns = Arc::clone(&conns);
        async move { store.put_connection(&conns[i], 4).await }
    })
    .await;

    assert_eq!(winners(&results), 4);
    assert_eq!(
        h.store.list_connections(&session.id).await.unwrap().len(),
        4
    );
}

pub async fn concurrent_consumptions_of_one_ticket_have_one_winner(h: Harness) {
    let ticket = TicketId::generate();
    let expires_at = h.now().plus(Duration::from_secs(30));

    let results = race(&h.store, |store, _| {
        let ticket = ticket.clone();
        async move { store.consume_ticket(&ticket, expires_at).await }
    })
    .await;

    assert_one_winner_the_rest_already_used(&results);
}

pub async fn concurrent_resumes_of_one_release_have_one_winner(h: Harness) {
    let ticket = TicketId::generate();
    let last_delivered = EventId {
        epoch: 7,
        sequence: 42,
    };
    h.store
        .consume_ticket(&ticket, h.now().plus(Duration::from_secs(30)))
        .await
        .unwrap();
    h.store
        .release_ticket(
            &ticket,
            last_delivered,
            h.now().plus(Duration::from_secs(120)),
        )
        .await
        .unwrap();

    let results = race(&h.store, |store, _| {
        let ticket = ticket.clone();
        async move { store.resume_ticket(&ticket, last_delivered).await }
    })
    .await;

    assert_one_winner_the_rest_already_used(&results);
}

pub async fn streamers_racing_for_a_lease_yield_one_owner(h: Harness) {
    let results = race(&h.store, |store, i| async move {
        store
            .acquire_lease(
                "session/raced",
                &format!("streamer-{i}"),
                Duration::from_secs(10),
            )
            .await
    })
    .await;

    assert_eq!(winners(&results), 1);
    let winner = results.iter().find_map(|r| r.as_ref().ok()).unwrap();
    assert_eq!(
        h.store.get_lease("session/raced").await.unwrap().as_ref(),
        Some(winner)
    );
}

pub async fn concurrent_writers_from_one_version_have_one_winner(h: Harness) {
    let session = h.session("alice");
    h.store.create_session(&session, 10).await.unwrap();
    let session = Arc::new(session);

    let results = race(&h.store, |store, i| {
        let session = Arc::clone(&session);
        async move {
            let mut next = session.close(session.created_at).unwrap();
            next.name = Some(SessionName::parse("name", &format!("writer {i}")).unwrap());
            store.update_session(&session, &next).await.map(|()| next)
        }
    })
    .await;

    assert_eq!(winners(&results), 1);
    let winner = results.into_iter().find_map(Result::ok).unwrap();
    assert_eq!(
        h.store.get_session(&session.id).await.unwrap(),
        Some(winner)
    );
    // Its quota slot was released exactly once: the user can open exactly one more.
    h.store
        .create_session(&h.session("alice"), 1)
        .await
        .unwrap();
    assert!(
        h.store
            .create_session(&h.session("alice"), 1)
            .await
            .is_err()
    );
}

pub async fn concurrent_claims_of_one_idempotency_key_have_one_winner(h: Harness) {
    let key = IdempotencyKey::parse("Idempotency-Key", "race").unwrap();
    let body = RequestFingerprint::of(&[b"same body"]);

    let results = race(&h.store, |store, _| {
        let (key, body) = (key.clone(), body.clone());
        async move {
            store
                .claim_idempotency(&user("alice"), &key, &body, Duration::from_secs(3600))
                .await
        }
    })
    .await;

    let claims: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        claims
            .iter()
            .filter(|c| **c == IdempotencyClaim::Claimed)
            .count(),
        1
    );
    assert!(
        claims
            .iter()
            .all(|c| matches!(c, IdempotencyClaim::Claimed | IdempotencyClaim::InProgress))
    );
}

/// Exactly one attempt on a ticket won; every other was told the ticket is already used.
fn assert_one_winner_the_rest_already_used(results: &[Result<(), StoreError>]) {
    assert_eq!(winners(results), 1);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::TicketAlreadyUsed))
    );
}
