//! The revocation list: by token id and by subject, each in force until its `until`, never
//! shortened, and independent of other tokens and subjects.

use std::time::Duration;

use session_core::domain::{Revocation, RevocationTarget, TokenId};

use crate::helpers::{Harness, user};

fn token(id: &str) -> RevocationTarget {
    RevocationTarget::Token(TokenId::parse("token_id", id).unwrap())
}

fn subject(name: &str) -> RevocationTarget {
    RevocationTarget::Subject(user(name))
}

async fn revoke(h: &Harness, target: RevocationTarget, lasts: Duration) -> Revocation {
    let revocation = Revocation {
        target,
        until: h.now().plus(lasts),
    };
    h.store.revoke(&revocation).await.unwrap();
    revocation
}

pub async fn nothing_is_revoked_in_an_empty_list(h: Harness) {
    let found = h.store.revocation("jti-1", &user("alice")).await.unwrap();
    assert_eq!(found, None);
}

pub async fn a_revoked_token_is_found_by_its_id_and_no_other_token_is(h: Harness) {
    let revocation = revoke(&h, token("jti-1"), Duration::from_secs(600)).await;

    let found = h.store.revocation("jti-1", &user("alice")).await.unwrap();
    assert_eq!(found, Some(revocation));
    // Another token of the same subject, and the same id under another subject's name, are
    // looked up by what they are: the token id matches whoever presents it.
    assert_eq!(
        h.store.revocation("jti-2", &user("alice")).await.unwrap(),
        None
    );
    assert!(
        h.store
            .revocation("jti-1", &user("bob"))
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn a_revoked_subject_refuses_every_token_of_it_only(h: Harness) {
    let revocation = revoke(&h, subject("mallory"), Duration::from_secs(600)).await;

    for jti in ["a", "b", ""] {
        let found = h.store.revocation(jti, &user("mallory")).await.unwrap();
        assert_eq!(found.as_ref(), Some(&revocation), "token {jti:?}");
    }
    assert_eq!(h.store.revocation("a", &user("alice")).await.unwrap(), None);
}

pub async fn a_revocation_lapses_at_its_until(h: Harness) {
    revoke(&h, token("jti-1"), Duration::from_secs(60)).await;
    revoke(&h, subject("mallory"), Duration::from_secs(60)).await;

    h.clock.advance(Duration::from_secs(59));
    assert!(
        h.store
            .revocation("jti-1", &user("alice"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        h.store
            .revocation("x", &user("mallory"))
            .await
            .unwrap()
            .is_some()
    );
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.store.revocation("jti-1", &user("alice")).await.unwrap(),
        None
    );
    assert_eq!(
        h.store.revocation("x", &user("mallory")).await.unwrap(),
        None
    );
}

pub async fn a_revocation_is_never_shortened_but_may_be_extended(h: Harness) {
    let long = revoke(&h, subject("mallory"), Duration::from_secs(600)).await;
    revoke(&h, subject("mallory"), Duration::from_secs(60)).await;
    assert_eq!(
        h.store.revocation("x", &user("mallory")).await.unwrap(),
        Some(long)
    );

    let longer = revoke(&h, subject("mallory"), Duration::from_secs(1200)).await;
    h.clock.advance(Duration::from_secs(900));
    assert_eq!(
        h.store.revocation("x", &user("mallory")).await.unwrap(),
        Some(longer)
    );
}

pub async fn a_lapsed_revocation_can_be_made_again(h: Harness) {
    revoke(&h, token("jti-1"), Duration::from_secs(60)).await;
    h.clock.advance(Duration::from_secs(120));
    let again = revoke(&h, token("jti-1"), Duration::from_secs(60)).await;
    assert_eq!(
        h.store.revocation("jti-1", &user("alice")).await.unwrap(),
        Some(again)
    );
}

pub async fn when_both_are_revoked_the_tokens_revocation_is_reported(h: Harness) {
    let by_token = revoke(&h, token("jti-1"), Duration::from_secs(60)).await;
    revoke(&h, subject("mallory"), Duration::from_secs(600)).await;
    assert_eq!(
        h.store.revocation("jti-1", &user("mallory")).await.unwrap(),
        Some(by_token)
    );
}
