//! A frontend's whole path with every component on DynamoDB (moto's server): each REST route,
//! the WebSocket authorizer and routes, the streamer's SSE and its WebSocket push with its
//! leases. Besides what it asserts, it is the test suite's widest source of AWS calls: with
//! `AWS_CALL_LOG` set (scripts/test.sh sets it), every call is recorded with the component that
//! made it, and `scripts/permissions-check.sh` holds each one against that component's IAM
//! role in the SAM template.

use reqwest::StatusCode;
use serde_json::json;
use session_core::config::StoreBackend;
use session_tests::book_replica::Replica;
use session_tests::moto::Moto;
use session_tests::stream_fixture::Fixture;

use crate::ws::{WsClient, ws_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_stream_works_with_each_component_on_its_own_dynamodb_client() {
    let table = format!("aws-calls-{}", ulid::Ulid::new().to_string().to_lowercase());
    let fixture = Fixture::start_stack(&["BTC-USD"], 200, |stack| {
        let service = &mut stack.service;
        service.store.backend = StoreBackend::Dynamodb;
        service.store.endpoint = Some(Moto::shared().endpoint().to_owned());
        service.store.table_name.clone_from(&table);
        stack.streamer.push_poll_ms = std::time::Duration::from_millis(250);
    })
    .await;
    let user = &fixture.user;
    let session = &fixture.session;
    let simulator = &fixture.simulator;

    // REST: health (it reads the table), reads, an idempotent create replayed.
    let health = fixture.api.anonymous().get("/v1/health").await;
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    assert_eq!(user.get("/v1/sessions").await.status, StatusCode::OK);
    assert_eq!(
        user.get(&format!("/v1/sessions/{session}")).await.status,
        StatusCode::OK
    );
    let key = [("idempotency-key", "aws-calls-create")];
    let first = user.post_with("/v1/sessions", &json!({}), &key).await;
    let replay = user.post_with("/v1/sessions", &json!({}), &key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(replay.body["session_id"], first.body["session_id"]);
    let path = format!("/v1/sessions/{session}/simulators/{simulator}");
    assert_eq!(user.get(&path).await.status, StatusCode::OK);
    assert_eq!(
        user.get(&format!("{path}/book?symbol=BTC-USD"))
            .await
            .status,
        StatusCode::OK
    );

    // SSE through the streamer with a single-use ticket.
    let mut stream = fixture.open().await;
    let mut replica = Replica::default();
    session_tests::stream_fixture::read_events(&mut stream, &mut replica, 20).await;
    assert!(replica.events >= 20, "{} events over SSE", replica.events);

    // WebSocket: the ticket authorizer, `$connect`, heartbeats, the streamer's push (its lease
    // and the session's connections through GSI1), then `$disconnect`.
    let mut client = WsClient::open(&ws_url(&fixture, None).await).await;
    let first = client.next().await;
    assert_eq!(first.event, "snapshot");
    let ack = client.heartbeat_ack(first.id.as_deref()).await;
    assert_eq!(ack["type"], "heartbeat_ack", "{ack}");
    drop(client);

    // An admin revokes a subject (the revocation item is the REST function's write; every door
    // above read the list: REST, the WebSocket authorizer, the streamer).
    let admin_token = fixture
        .api
        .stack
        .auth()
        .issue(
            "ops",
            &["sessions:admin"],
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let revoked = fixture
        .api
        .with_authorization(&format!("Bearer {admin_token}"))
        .post("/v1/admin/revocations", &json!({"subject": "mallory"}))
        .await;
    assert_eq!(revoked.status, StatusCode::CREATED, "{revoked:?}");

    // Reconnect advice, then stop and close.
    let (url, _) = fixture.reconnect_url(None).await;
    assert!(url.contains("ticket="), "{url}");
    fixture.stop_simulator().await;
    let closed = user.delete(&format!("/v1/sessions/{session}")).await;
    assert!(closed.status.is_success(), "{closed:?}");
}
