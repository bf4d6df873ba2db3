//! Revocations: bounded in time, and honoured at every door once the doors' cache has let go
//! of its earlier answer.

use std::time::Duration;

use super::{Harness, MAX_TOKEN_LIFE, REVOCATION_CACHE};
use crate::clock::Clock as _;
use crate::domain::{RevocationTarget, TokenId, Transport};
use crate::service::{ServiceError, StreamCredential};

#[tokio::test]
async fn a_revocation_until_outside_the_tokens_possible_life_is_refused_naming_the_field() {
    let h = Harness::new();
    let admin = h.caller("admin");
    let now = h.clock.now();
    let cases = [
        (Some(now), "must be in the future"),
        (
            Some(now.minus(Duration::from_secs(1))),
            "must be in the future",
        ),
        (
            Some(now.plus(MAX_TOKEN_LIFE + Duration::from_millis(1))),
            "must be at most 86400 s ahead",
        ),
    ];

    for (until, problem) in cases {
        let target = RevocationTarget::Subject(h.caller("alice").user);
        let outcome = h.service.revoke(&admin, target, until, "until").await;

        assert!(
            matches!(&outcome, Err(ServiceError::Invalid(e))
                if e.field == "until" && e.problem.starts_with(problem)),
            "{until:?}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_revocation_without_until_lasts_the_longest_token_life() {
    let h = Harness::new();
    let admin = h.caller("admin");
    let target = RevocationTarget::Token(TokenId::parse("jti", "tok-alice").unwrap());

    let revocation = h
        .service
        .revoke(&admin, target.clone(), None, "until")
        .await
        .unwrap();

    assert_eq!(revocation.target, target);
    assert_eq!(revocation.until, h.clock.now().plus(MAX_TOKEN_LIFE));
}

#[tokio::test]
async fn a_revoked_subject_is_refused_at_every_door_once_the_cache_lets_go_and_until_it_lapses() {
    let h = Harness::new();
    let admin = h.caller("admin");
    let alice = h.caller("alice");
    let session = h.session(&alice).await;
    h.simulator(&alice, &session).await;
    let ticket = h
        .service
        .issue_ticket(&alice, &session.id, Transport::Ws, None)
        .await
        .unwrap();
    h.service
        .ensure_not_revoked(&alice.token_id, &alice.user)
        .await
        .unwrap();
    let lasts = Duration::from_secs(600);
    let until = h.clock.now().plus(lasts);
    h.service
        .revoke(
            &admin,
            RevocationTarget::Subject(alice.user.clone()),
            Some(until),
            "until",
        )
        .await
        .unwrap();

    let cached = h
        .service
        .ensure_not_revoked(&alice.token_id, &alice.user)
        .await;
    h.clock.advance(REVOCATION_CACHE);
    let bearer = h
        .streams
        .admit_stream(StreamCredential::Bearer(&alice), &session.id, None, None)
        .await;
    let websocket = h.authorizer.admit_connect(&ticket.token).await;
    let other_user = h
        .service
        .ensure_not_revoked(&admin.token_id, &admin.user)
        .await;
    h.clock.advance(lasts);
    let lapsed = h
        .service
        .ensure_not_revoked(&alice.token_id, &alice.user)
        .await;

    assert!(cached.is_ok(), "the cached answer stands: {cached:?}");
    for refused in [bearer.map(|_| ()), websocket.map(|_| ())] {
        assert!(
            matches!(refused, Err(ServiceError::TokenRevoked)),
            "{refused:?}"
        );
    }
    assert!(other_user.is_ok(), "{other_user:?}");
    assert!(lapsed.is_ok(), "{lapsed:?}");
}
