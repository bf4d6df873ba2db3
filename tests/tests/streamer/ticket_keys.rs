//! Rotating the ticket keys end to end: while the verifiers hold the old and the new public
//! key, a ticket minted under the old key still opens a stream after the REST API switched to
//! the new one; a key dropped from the set opens nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::auth::{Principal, TicketSigner};
use session_core::domain::{SessionId, Timestamp, Transport, UserId};
use session_tests::sse;
use session_tests::stream_fixture::{Fixture, PATIENCE};

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_unix_millis(i64::try_from(ms).unwrap())
}

/// An SSE ticket URL for the fixture's session, signed by `key` as the REST API would.
fn stream_url_signed_by(fixture: &Fixture, key: &SigningKey) -> String {
    let alice = Principal {
        user: UserId::parse("user", "alice").unwrap(),
        scopes: vec!["sessions:read".to_owned()],
        expires_at: now().plus(Duration::from_secs(3600)),
        token_id: "rotation-test-token".to_owned(),
    };
    let session = SessionId::parse("session_id", &fixture.session).unwrap();
    let (ticket, _) = TicketSigner::new(key.clone(), Duration::from_secs(60))
        .issue(&session, &alice, Transport::Sse, now())
        .unwrap();
    format!("{}?ticket={ticket}", fixture.stream_url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_of_the_old_key_opens_a_stream_after_the_signer_switched_while_both_are_published()
{
    let old = SigningKey::generate("2026-11").unwrap();
    let new = SigningKey::generate("2026-12").unwrap();
    let dropped = SigningKey::generate("2026-10").unwrap();
    let published = VerifyKeys::of(&[&old, &new]).unwrap();
    let fixture = Fixture::start(&["BTC-USD"], 200, |service| {
        // Step 2 of the rotation: the new key signs, both public keys verify.
        service
            .auth
            .set_ticket_keys(Some(new.clone()), Some(published))
            .unwrap();
    })
    .await;

    let minted_before_the_switch = stream_url_signed_by(&fixture, &old);
    let mut old_stream = sse::connect(&minted_before_the_switch, &[]).await.unwrap();
    let mut new_stream = fixture.open().await;
    let refused = sse::connect(&stream_url_signed_by(&fixture, &dropped), &[])
        .await
        .unwrap_err();

    assert!(
        old_stream.next(PATIENCE).await.is_some(),
        "the old key's stream delivers"
    );
    assert!(
        new_stream.next(PATIENCE).await.is_some(),
        "the new key's stream delivers"
    );
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    assert_eq!(refused.problem(), "ticket-refused");
}
