use std::time::Duration;

use session_core::domain::TicketId;
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
