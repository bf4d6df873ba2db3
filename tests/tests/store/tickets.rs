use std::time::Duration;

use session_core::domain::{EventId, TicketId};
use session_core::store::StoreError;

use crate::helpers::Harness;

pub async fn a_ticket_is_consumed_once(h: Harness) {
    let ticket = TicketId::generate();
    let expires_at = h.now().plus(Duration::from_secs(30));

    h.store.consume_ticket(&ticket, expires_at).await.unwrap();
    let err = h
        .store
        .consume_ticket(&ticket, expires_at)
        .await
        .unwrap_err();

    assert!(matches!(err, StoreError::TicketAlreadyUsed), "{err:?}");
    h.store
        .consume_ticket(&TicketId::generate(), expires_at)
        .await
        .unwrap();
}

pub async fn a_consumption_record_is_absent_after_the_ticket_expires(h: Harness) {
    // Past its expiry a ticket is refused by its own `exp` check before the store is asked;
    // the store keeps no record longer than that, like DynamoDB's TTL.
    let ticket = TicketId::generate();
    h.store
        .consume_ticket(&ticket, h.now().plus(Duration::from_secs(30)))
        .await
        .unwrap();

    h.clock.advance(Duration::from_secs(29));
    assert!(h.store.consume_ticket(&ticket, h.now()).await.is_err());
    h.clock.advance(Duration::from_secs(1));
    h.store
        .consume_ticket(&ticket, h.now().plus(Duration::from_secs(30)))
        .await
        .unwrap();
}

/// How long a consumed ticket is valid in the resume cases.
const TICKET_LIFETIME: Duration = Duration::from_secs(30);
/// How long a released ticket stays resumable in the resume cases.
const RESUMABLE: Duration = Duration::from_secs(120);

fn event(epoch: u64, sequence: u64) -> EventId {
    EventId { epoch, sequence }
}

/// A ticket consumed now, valid for [`TICKET_LIFETIME`].
async fn consumed(h: &Harness) -> TicketId {
    let ticket = TicketId::generate();
    h.store
        .consume_ticket(&ticket, h.now().plus(TICKET_LIFETIME))
        .await
        .unwrap();
    ticket
}

/// A ticket consumed now whose connection ended at `last_delivered`, resumable for
/// [`RESUMABLE`].
async fn released(h: &Harness, last_delivered: EventId) -> TicketId {
    let ticket = consumed(h).await;
    h.store
        .release_ticket(&ticket, last_delivered, h.now().plus(RESUMABLE))
        .await
        .unwrap();
    ticket
}

fn assert_refused(result: Result<(), StoreError>) {
    let err = result.unwrap_err();
    assert!(matches!(err, StoreError::TicketAlreadyUsed), "{err:?}");
}

pub async fn a_released_ticket_resumes_from_its_last_delivered_event(h: Harness) {
    let ticket = released(&h, event(7, 42)).await;

    h.store.resume_ticket(&ticket, event(7, 42)).await.unwrap();
}

pub async fn a_released_ticket_resumes_from_an_earlier_event_of_the_same_epoch(h: Harness) {
    let ticket = released(&h, event(7, 42)).await;

    h.store.resume_ticket(&ticket, event(7, 0)).await.unwrap();
}

pub async fn a_release_admits_one_resume_only(h: Harness) {
    let ticket = released(&h, event(7, 42)).await;
    h.store.resume_ticket(&ticket, event(7, 42)).await.unwrap();

    assert_refused(h.store.resume_ticket(&ticket, event(7, 42)).await);
    assert_refused(h.store.resume_ticket(&ticket, event(7, 41)).await);
}

pub async fn a_ticket_that_was_never_released_cannot_resume(h: Harness) {
    let held = consumed(&h).await;

    assert_refused(h.store.resume_ticket(&held, event(0, 0)).await);
    assert_refused(
        h.store
            .resume_ticket(&TicketId::generate(), event(0, 0))
            .await,
    );
}

pub async fn a_release_lapses_at_its_resumable_until(h: Harness) {
    let on_time = released(&h, event(7, 42)).await;
    let late = released(&h, event(7, 42)).await;

    h.clock
        .advance(RESUMABLE.saturating_sub(Duration::from_millis(1)));
    h.store.resume_ticket(&on_time, event(7, 42)).await.unwrap();
    h.clock.advance(Duration::from_millis(1));
    assert_refused(h.store.resume_ticket(&late, event(7, 42)).await);
}

pub async fn a_ticket_resumes_only_within_the_released_epoch(h: Harness) {
    let ticket = released(&h, event(7, 42)).await;

    assert_refused(h.store.resume_ticket(&ticket, event(6, 42)).await);
    assert_refused(h.store.resume_ticket(&ticket, event(8, 0)).await);
    // The refusals left the release in place.
    h.store.resume_ticket(&ticket, event(7, 1)).await.unwrap();
}

pub async fn a_ticket_cannot_resume_ahead_of_its_last_delivered_event(h: Harness) {
    let ticket = released(&h, event(7, 42)).await;

    assert_refused(h.store.resume_ticket(&ticket, event(7, 43)).await);
    h.store.resume_ticket(&ticket, event(7, 42)).await.unwrap();
}

pub async fn releasing_a_ticket_never_consumed_or_expired_is_not_found(h: Harness) {
    let until = h.now().plus(RESUMABLE);
    let never = h
        .store
        .release_ticket(&TicketId::generate(), event(7, 42), until)
        .await
        .unwrap_err();
    let expired = consumed(&h).await;
    h.clock.advance(TICKET_LIFETIME);
    let after_expiry = h
        .store
        .release_ticket(&expired, event(7, 42), until)
        .await
        .unwrap_err();

    assert!(
        matches!(
            never,
            StoreError::NotFound {
                entity: "ticket",
                ..
            }
        ),
        "{never:?}"
    );
    assert!(
        matches!(
            after_expiry,
            StoreError::NotFound {
                entity: "ticket",
                ..
            }
        ),
        "{after_expiry:?}"
    );
    // A failed release records nothing: neither ticket can resume.
    assert_refused(h.store.resume_ticket(&expired, event(7, 42)).await);
}

pub async fn a_release_keeps_the_ticket_record_until_resumable_until(h: Harness) {
    let ticket = released(&h, event(7, 42)).await;

    // Past the ticket's own expiry, but not the release's.
    h.clock.advance(TICKET_LIFETIME + Duration::from_secs(30));
    assert_refused(h.store.consume_ticket(&ticket, h.now()).await);
    h.store.resume_ticket(&ticket, event(7, 42)).await.unwrap();
}

pub async fn a_release_never_shortens_the_ticket_record(h: Harness) {
    let ticket = consumed(&h).await;
    h.store
        .release_ticket(&ticket, event(7, 42), h.now().plus(Duration::from_secs(10)))
        .await
        .unwrap();

    h.clock.advance(Duration::from_secs(20));
    assert_refused(h.store.resume_ticket(&ticket, event(7, 42)).await);
    assert_refused(
        h.store
            .consume_ticket(&ticket, h.now().plus(TICKET_LIFETIME))
            .await,
    );
}

pub async fn a_second_release_overwrites_the_first(h: Harness) {
    let ticket = released(&h, event(7, 42)).await;
    h.store
        .release_ticket(&ticket, event(8, 5), h.now().plus(RESUMABLE))
        .await
        .unwrap();

    assert_refused(h.store.resume_ticket(&ticket, event(7, 42)).await);
    assert_refused(h.store.resume_ticket(&ticket, event(8, 6)).await);
    h.store.resume_ticket(&ticket, event(8, 5)).await.unwrap();
}

pub async fn a_resumed_ticket_released_again_resumes_once_more(h: Harness) {
    let ticket = released(&h, event(7, 42)).await;
    h.store.resume_ticket(&ticket, event(7, 42)).await.unwrap();
    h.clock.advance(Duration::from_secs(60));
    h.store
        .release_ticket(&ticket, event(7, 90), h.now().plus(RESUMABLE))
        .await
        .unwrap();

    h.clock.advance(Duration::from_secs(60));
    h.store.resume_ticket(&ticket, event(7, 90)).await.unwrap();
    assert_refused(h.store.resume_ticket(&ticket, event(7, 90)).await);
}
