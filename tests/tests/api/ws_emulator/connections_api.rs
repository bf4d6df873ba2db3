//! The `@connections` API driven by `aws-sdk-apigatewaymanagement`: posts, gets and deletes,
//! the payload limit, gone connections, and posts delivered while a handler is slow.

use std::time::Duration;

use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::SinkExt as _;
use serde_json::{Value, json};
use session_tests::test_api::{ConnectedSocket, TestApi};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::stall::stack_behind_relay;

use super::{closed_with, connections, heartbeat, management, next, next_posted};

#[tokio::test]
async fn the_aws_sdk_posts_to_gets_and_deletes_a_connection() {
    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let client = management(&api.stack.endpoints().connections_url);
    // An endpoint without the stage works too.
    let base = api
        .stack
        .endpoints()
        .connections_url
        .trim_end_matches("/local");
    let staged = management(base);

    client
        .post_to_connection()
        .connection_id(&ws.connection_id)
        .data(Blob::new(r#"{"type":"hello"}"#))
        .send()
        .await
        .unwrap();
    let received = next_posted(&mut ws.socket).await;
    let described = staged
        .get_connection()
        .connection_id(&ws.connection_id)
        .send()
        .await
        .unwrap();
    client
        .delete_connection()
        .connection_id(&ws.connection_id)
        .send()
        .await
        .unwrap();
    let code = closed_with(&mut ws.socket).await;
    let gone = client
        .post_to_connection()
        .connection_id(&ws.connection_id)
        .data(Blob::new("late"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let gone_get = client
        .get_connection()
        .connection_id(&ws.connection_id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();

    assert_eq!(received, Some(Message::text(r#"{"type":"hello"}"#)));
    assert_eq!(ws.connection_id.len(), 16);
    assert!(ws.connection_id.ends_with('='));
    assert_eq!(
        described.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );
    assert!(described.connected_at().is_some());
    assert!(described.last_active_at() >= described.connected_at());
    assert_eq!(code, CloseCode::Normal);
    assert!(gone.is_gone_exception(), "{gone:?}");
    assert!(gone_get.is_gone_exception(), "{gone_get:?}");
    assert_eq!(connections(&ws.user, &ws.session).await, 0);
}

#[tokio::test]
async fn posting_over_128_kb_is_refused_with_payload_too_large() {
    let api = TestApi::spawn().await;
    let ws = ConnectedSocket::open(&api, "alice").await;
    let client = management(&api.stack.endpoints().connections_url);

    let refused = client
        .post_to_connection()
        .connection_id(&ws.connection_id)
        .data(Blob::new(vec![b'x'; 129 * 1024]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();

    assert!(refused.is_payload_too_large_exception(), "{refused:?}");
}

#[tokio::test]
async fn a_closed_connection_is_gone_for_the_aws_sdk() {
    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let client = management(&api.stack.endpoints().connections_url);
    ws.socket.close(None).await.unwrap();
    while next(&mut ws.socket).await.is_some() {}

    let gone = client
        .post_to_connection()
        .connection_id(&ws.connection_id)
        .data(Blob::new("hello"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();

    assert!(gone.is_gone_exception(), "{gone:?}");
}

#[tokio::test]
async fn posts_reach_the_client_while_a_handler_waits_on_the_store() {
    // The heartbeat waits out the hold, however long posting takes on a busy machine.
    let (api, relay) = stack_behind_relay(Duration::from_secs(60), Duration::from_secs(60)).await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let client = management(&api.stack.endpoints().connections_url);

    // The heartbeat's handler waits on the store; meanwhile more frames are posted than the
    // emulator queues for a connection.
    relay.hold();
    ws.socket.send(Message::text(heartbeat(1))).await.unwrap();
    let posts = 300;
    for n in 0..posts {
        client
            .post_to_connection()
            .connection_id(&ws.connection_id)
            .data(Blob::new(json!({ "n": n }).to_string()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("post {n}: {:?}", e.into_service_error()));
    }
    let mut received = Vec::new();
    for _ in 0..posts {
        received.push(next_posted(&mut ws.socket).await);
    }
    relay.release();
    let answer = next(&mut ws.socket).await;

    for (n, message) in received.into_iter().enumerate() {
        assert_eq!(message, Some(Message::text(json!({ "n": n }).to_string())));
    }
    let Some(Message::Text(answer)) = answer else {
        panic!("no answer to the heartbeat: {answer:?}");
    };
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["type"], "heartbeat_ack", "{answer}");
}
