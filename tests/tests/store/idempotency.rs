use std::time::Duration;

use session_core::domain::{IdempotencyClaim, IdempotencyKey, RequestFingerprint, StoredResponse};

use crate::helpers::{Harness, user};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![("location".into(), "/v1/sessions/ses_1".into())],
        body: r#"{"session_id":"ses_1"}"#.into(),
    }
}

pub async fn a_key_is_claimed_then_replayed_or_refused(h: Harness) {
    let alice = user("alice");
    let key = IdempotencyKey::parse("Idempotency-Key", "create-1").unwrap();
    let body = RequestFingerprint::of(&[b"POST /v1/sessions", b"{}"]);
    let other = RequestFingerprint::of(&[b"POST /v1/sessions", b"{\"name\":\"x\"}"]);

    let first = h
        .store
        .claim_idempotency(&alice, &key, &body, DAY)
        .await
        .unwrap();
    let retry = h
        .store
        .claim_idempotency(&alice, &key, &body, DAY)
        .await
        .unwrap();
    h.store
        .complete_idempotency(&alice, &key, &body, &response())
        .await
        .unwrap();
    let after = h
        .store
        .claim_idempotency(&alice, &key, &body, DAY)
        .await
        .unwrap();
    let reused = h
        .store
        .claim_idempotency(&alice, &key, &other, DAY)
        .await
        .unwrap();

    assert_eq!(first, IdempotencyClaim::Claimed);
    assert_eq!(retry, IdempotencyClaim::InProgress);
    assert_eq!(after, IdempotencyClaim::Completed(response()));
    assert_eq!(reused, IdempotencyClaim::Mismatch);
    assert!(
        h.store
            .complete_idempotency(&alice, &key, &body, &response())
            .await
            .is_err()
    );
}

pub async fn an_abandoned_or_stuck_claim_can_be_taken_again(h: Harness) {
    let alice = user("alice");
    let key = IdempotencyKey::parse("Idempotency-Key", "k").unwrap();
    let body = RequestFingerprint::of(&[b"x"]);
    h.store
        .claim_idempotency(&alice, &key, &body, DAY)
        .await
        .unwrap();

    h.store
        .abandon_idempotency(&alice, &key, &body)
        .await
        .unwrap();
    assert_eq!(
        h.store
            .claim_idempotency(&alice, &key, &body, DAY)
            .await
            .unwrap(),
        IdempotencyClaim::Claimed
    );

    // The claimer died without abandoning: after the lock lapses, a retry takes over.
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(
        h.store
            .claim_idempotency(&alice, &key, &body, DAY)
            .await
            .unwrap(),
        IdempotencyClaim::Claimed
    );
}

pub async fn keys_belong_to_one_user_and_expire(h: Harness) {
    let key = IdempotencyKey::parse("Idempotency-Key", "same").unwrap();
    let body = RequestFingerprint::of(&[b"x"]);
    let other = RequestFingerprint::of(&[b"y"]);
    h.store
        .claim_idempotency(&user("alice"), &key, &body, DAY)
        .await
        .unwrap();
    h.store
        .complete_idempotency(&user("alice"), &key, &body, &response())
        .await
        .unwrap();

    assert_eq!(
        h.store
            .claim_idempotency(&user("bob"), &key, &other, DAY)
            .await
            .unwrap(),
        IdempotencyClaim::Claimed
    );
    h.clock.advance(DAY);
    assert_eq!(
        h.store
            .claim_idempotency(&user("alice"), &key, &other, DAY)
            .await
            .unwrap(),
        IdempotencyClaim::Claimed
    );
}
