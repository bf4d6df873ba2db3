//! Store writes whose answer is lost after they landed: the SDK retries the attempt, and the
//! retry must count as the write it repeats (not as a replayed ticket or a duplicate session).
//! The store is moto behind a relay that lets one request through and drops its answer.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::stall::stack_behind_relay;

/// The value of every `ClientRequestToken` in `requests`, in order.
fn client_request_tokens(requests: &[String]) -> Vec<String> {
    let field = "\"ClientRequestToken\":\"";
    requests
        .iter()
        .filter_map(|r| {
            let start = r.find(field)? + field.len();
            let end = r[start..].find('"')?;
            Some(r[start..start + end].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_ticket_whose_consumption_landed_but_whose_answer_was_lost_still_connects() {
    let (api, relay) = stack_behind_relay(Duration::from_secs(1), Duration::from_secs(5)).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let url = alice.ws_ticket(&session).await.1;

    // The ticket's consumption record (`TICKET#<jti>`) is the first write that names it.
    relay.lose_answer_to("TICKET#");
    let connected = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(&url),
    )
    .await
    .expect("the handshake is answered");

    assert_eq!(relay.lost(), 1, "the consuming write's answer was lost");
    let status = match &connected {
        Ok(_) => StatusCode::SWITCHING_PROTOCOLS.as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the handshake failed: {e}"),
    };
    assert_eq!(
        status,
        StatusCode::SWITCHING_PROTOCOLS.as_u16(),
        "the ticket was refused as if replayed"
    );
}

#[tokio::test]
async fn a_session_whose_creation_landed_but_whose_answer_was_lost_is_created_once() {
    let (api, relay) = stack_behind_relay(Duration::from_secs(1), Duration::from_secs(5)).await;
    let alice = api.user("alice");

    relay.lose_answer_to("TransactWriteItems");
    let created = alice.post("/v1/sessions", &json!({})).await;
    let listed = alice.get("/v1/sessions").await;

    assert_eq!(
        relay.lost(),
        1,
        "the creating transaction's answer was lost"
    );
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed:?}");
    assert_eq!(items[0]["session_id"], created.body["session_id"]);
    // The SDK's retry resent the transaction with its token (DynamoDB answers it with the first
    // call's success; moto ignores tokens, so the write id above is what this run shows).
    let tokens = client_request_tokens(&relay.requests());
    assert!(tokens.len() >= 2, "{tokens:?}");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
}
