//! The WebSocket functions fed API Gateway WebSocket events (`$connect` authorizer and the
//! routes' handler) over the local stack's service: tickets are single-use, connections count
//! against the quota, heartbeats measure and advise, unknown actions get an error frame. The
//! lease advice (`draining`, `session_moved`) runs over a service whose store the test holds,
//! to take the session's lease as streamers do.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyResponse,
    ApiGatewayWebsocketProxyRequest,
};
use serde_json::{Value, json};
use session_core::clock::{Clock, SystemClock};
use session_core::config::Settings;
use session_core::domain::{Lease, NewSession, Session, TicketId, UserId, session_lease_name};
use session_core::service::{ConnectionService, ServiceParts};
use session_core::store::{InMemoryStore, SharedStore};
use session_functions::websocket::{authorize_connect, handle};
use session_functions::wiring;
use session_tests::test_api::{TestApi, User};

fn authorizer_event(ticket: Option<&str>) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let query = ticket.map_or(json!({}), |t| json!({ "ticket": t }));
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:local:000000000000:ws/$default/$connect",
        "headers": {"Host": "localhost", "Sec-WebSocket-Version": "13"},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {},
        "stageVariables": {},
        "requestContext": {
            "routeKey": "$connect", "eventType": "CONNECT", "connectionId": "conn-1=",
            "apiId": "ws", "stage": "$default", "requestId": "r1", "domainName": "localhost",
            "connectedAt": 1_795_766_400_000_i64, "requestTimeEpoch": 1_795_766_400_000_i64,
            "identity": {"sourceIp": "127.0.0.1"}
        }
    }))
    .expect("a WebSocket REQUEST authorizer event")
}

fn route_event(
    route: &str,
    connection: &str,
    context: &Value,
    body: Option<&str>,
) -> ApiGatewayWebsocketProxyRequest {
    let event_type = match route {
        "$connect" => "CONNECT",
        "$disconnect" => "DISCONNECT",
        _ => "MESSAGE",
    };
    let mut authorizer = context.clone();
    authorizer["principalId"] = context["user"].clone();
    serde_json::from_value(json!({
        "requestContext": {
            "routeKey": route, "eventType": event_type, "connectionId": connection,
            "messageDirection": "IN", "apiId": "ws", "stage": "$default", "requestId": "r2",
            "domainName": "localhost", "connectedAt": 1_795_766_400_000_i64,
            "requestTimeEpoch": 1_795_766_400_000_i64, "identity": {"sourceIp": "127.0.0.1"},
            "authorizer": authorizer
        },
        "body": body,
        "isBase64Encoded": false
    }))
    .expect("a WebSocket event")
}

/// The frame a response sends back, checked against docs/asyncapi.json.
fn frame(response: &ApiGatewayProxyResponse) -> Value {
    match &response.body {
        Some(aws_lambda_events::encodings::Body::Text(text)) => {
            session_tests::contract::assert_ws_received(text);
            serde_json::from_str(text).unwrap()
        }
        other => panic!("no text frame: {other:?}"),
    }
}

/// Authorizes and connects with a fresh ticket; returns the authorizer context.
async fn connect(api: &TestApi, user: &User, session: &str, connection: &str) -> (Value, i64) {
    let ticket = user.ws_ticket(session).await.0;
    let verdict = authorize_connect(
        api.stack.connect_authorizer(),
        &authorizer_event(Some(&ticket)),
    )
    .await
    .unwrap();
    let verdict = serde_json::to_value(&verdict).unwrap();
    let context = verdict["context"].clone();
    let connected = handle(
        api.stack.connection_service(),
        &route_event("$connect", connection, &context, None),
    )
    .await;
    (context, connected.status_code)
}

#[tokio::test]
async fn a_ticket_admits_one_connection_and_a_replay_is_denied() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let ticket = alice.ws_ticket(&session).await.0;

    let first = authorize_connect(
        api.stack.connect_authorizer(),
        &authorizer_event(Some(&ticket)),
    )
    .await
    .unwrap();
    let replay = authorize_connect(
        api.stack.connect_authorizer(),
        &authorizer_event(Some(&ticket)),
    )
    .await
    .unwrap();
    let missing = authorize_connect(api.stack.connect_authorizer(), &authorizer_event(None))
        .await
        .unwrap();
    let forged = authorize_connect(
        api.stack.connect_authorizer(),
        &authorizer_event(Some("e30.e30.AAAA")),
    )
    .await
    .unwrap();

    let first = serde_json::to_value(&first).unwrap();
    assert_eq!(
        first["policyDocument"]["Statement"][0]["Effect"], "Allow",
        "{first}"
    );
    assert_eq!(first["context"]["session_id"], session.as_str());
    assert_eq!(first["context"]["user"], "alice");
    for denied in [replay, missing, forged] {
        let denied = serde_json::to_value(&denied).unwrap();
        assert_eq!(
            denied["policyDocument"]["Statement"][0]["Effect"], "Deny",
            "{denied}"
        );
    }
}

#[tokio::test]
async fn an_sse_ticket_or_a_closed_session_does_not_open_a_websocket() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let sse = alice
        .post(
            &format!("/v1/sessions/{session}/tickets"),
            &json!({"transport": "sse"}),
        )
        .await;
    let ws = alice.ws_ticket(&session).await.0;
    alice.delete(&format!("/v1/sessions/{session}")).await;

    for ticket in [sse.body["ticket"].as_str().unwrap(), ws.as_str()] {
        let verdict = authorize_connect(
            api.stack.connect_authorizer(),
            &authorizer_event(Some(ticket)),
        )
        .await
        .unwrap();
        let verdict = serde_json::to_value(&verdict).unwrap();
        assert_eq!(
            verdict["policyDocument"]["Statement"][0]["Effect"], "Deny",
            "{verdict}"
        );
    }
}

#[tokio::test]
async fn connections_beyond_the_session_quota_are_refused_with_429() {
    let api = TestApi::spawn_with(|s| s.limits.connections_per_session = 2).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;

    let mut statuses = Vec::new();
    for connection in ["c1=", "c2=", "c3="] {
        statuses.push(connect(&api, &alice, &session, connection).await.1);
    }

    assert_eq!(statuses, [200, 200, 429]);
    let detail = alice.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(detail.body["connections"], 2);
}

#[tokio::test]
async fn heartbeats_are_acknowledged_with_quality_and_resume_information() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let (context, status) = connect(&api, &alice, &session, "hb=").await;
    assert_eq!(status, 200);
    let service = api.stack.connection_service();

    let first = frame(
        &handle(
            service,
            &route_event(
                "heartbeat",
                "hb=",
                &context,
                Some(r#"{"action":"heartbeat","seq":1,"client_time":1000}"#),
            ),
        )
        .await,
    );
    let server_time = first["server_time"].as_i64().unwrap();
    let body = json!({"action": "heartbeat", "seq": 4, "client_time": 6_000,
        "last_server_time": server_time, "seen_at": 1_000, "events_received": 42,
        "last_event_id": "7-42"})
    .to_string();
    let second = frame(
        &handle(
            service,
            &route_event("heartbeat", "hb=", &context, Some(&body)),
        )
        .await,
    );
    let repeat = frame(
        &handle(
            service,
            &route_event("heartbeat", "hb=", &context, Some(&body)),
        )
        .await,
    );

    assert_eq!(first["type"], "heartbeat_ack", "{first}");
    assert_eq!(first["seq"], 1);
    assert_eq!(second["quality"]["heartbeats"], 2, "{second}");
    assert_eq!(second["quality"]["missed_heartbeats"], 2);
    assert_eq!(second["quality"]["events_received"], 42);
    assert_eq!(second["resume"]["session_id"], session.as_str());
    assert_eq!(second["resume"]["last_event_id"], "7-42");
    assert_eq!(second["stale"], false);
    assert_eq!(repeat["stale"], true);
    assert_eq!(repeat["quality"]["heartbeats"], 2);
}

#[tokio::test]
async fn unknown_actions_malformed_json_and_bad_heartbeats_get_error_frames() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let (context, _) = connect(&api, &alice, &session, "d=").await;
    let service = api.stack.connection_service();

    let unknown = frame(
        &handle(
            service,
            &route_event("$default", "d=", &context, Some(r#"{"action":"dance"}"#)),
        )
        .await,
    );
    let malformed = frame(
        &handle(
            service,
            &route_event("$default", "d=", &context, Some("{nope")),
        )
        .await,
    );
    let bad = frame(
        &handle(
            service,
            &route_event(
                "heartbeat",
                "d=",
                &context,
                Some(r#"{"action":"heartbeat","seq":"one","client_time":1}"#),
            ),
        )
        .await,
    );

    assert_eq!(unknown["type"], "error");
    assert_eq!(unknown["code"], "unknown_action");
    assert!(unknown["message"].as_str().unwrap().contains("dance"));
    assert_eq!(malformed["code"], "malformed_json");
    assert_eq!(bad["code"], "invalid_heartbeat");
    assert!(bad["message"].as_str().unwrap().starts_with("seq"), "{bad}");
}

#[tokio::test]
async fn disconnect_removes_the_connection_and_is_idempotent() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let (context, _) = connect(&api, &alice, &session, "x=").await;
    let service = api.stack.connection_service();

    let first = handle(service, &route_event("$disconnect", "x=", &context, None)).await;
    let second = handle(service, &route_event("$disconnect", "x=", &context, None)).await;
    let late = frame(
        &handle(
            service,
            &route_event(
                "heartbeat",
                "x=",
                &context,
                Some(r#"{"action":"heartbeat","seq":1,"client_time":1}"#),
            ),
        )
        .await,
    );

    assert_eq!(first.status_code, 200);
    assert_eq!(second.status_code, 200);
    assert_eq!(late["code"], "connection_gone");
    let detail = alice.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(detail.body["connections"], 0);
}

/// The WebSocket handler over a service on an in-memory store that the test holds (the local
/// stack keeps its store to itself, and its streamer would take leases too), with one session of
/// alice's and one connection of it recorded.
struct LeaseWorld {
    service: ConnectionService,
    store: SharedStore,
    session: Session,
    /// The `$connect` authorizer's context, as API Gateway hands it to every event.
    context: Value,
}

const CONNECTION: &str = "lease=";
const LEASE_TTL: Duration = Duration::from_secs(60);

impl LeaseWorld {
    async fn connected() -> Self {
        let mut settings = Settings::default();
        // Never called: heartbeats do not reach the simulator service (its client is lazy).
        settings.backends.simulator_url = String::from("http://127.0.0.1:9");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store: SharedStore = Arc::new(InMemoryStore::new(clock.clone()));
        let backend = wiring::simulator_backend(&settings).unwrap();
        let parts = ServiceParts::from_settings(&settings, store.clone(), backend, clock.clone());
        let service = wiring::ws_handler(&settings, &parts).service;
        let alice = UserId::parse("user", "alice").unwrap();
        let session = Session::open(
            alice,
            NewSession::default(),
            clock.now(),
            Duration::from_secs(3600),
        );
        store.create_session(&session, 10).await.unwrap();
        // What the `$connect` authorizer hands on once a ticket admitted the connection.
        let context = json!({
            "session_id": session.id.as_str(),
            "user": "alice",
            "ticket_id": TicketId::generate().as_str(),
        });
        let connected = handle(
            &service,
            &route_event("$connect", CONNECTION, &context, None),
        )
        .await;
        assert_eq!(connected.status_code, 200);
        Self {
            service,
            store,
            session,
            context,
        }
    }

    /// Takes the session's lease as streamer `owner` does.
    async fn take_lease(&self, owner: &str) -> Lease {
        self.store
            .acquire_lease(&session_lease_name(&self.session.id), owner, LEASE_TTL)
            .await
            .unwrap()
    }

    /// Sends heartbeat `seq` and returns the answer frame.
    async fn heartbeat(&self, seq: u64) -> Value {
        let body = json!({"action": "heartbeat", "seq": seq, "client_time": 1_000 * seq});
        session_tests::contract::assert_ws_sent(&body);
        frame(
            &handle(
                &self.service,
                &route_event(
                    "heartbeat",
                    CONNECTION,
                    &self.context,
                    Some(&body.to_string()),
                ),
            )
            .await,
        )
    }
}

#[tokio::test]
async fn a_heartbeat_advises_draining_while_the_sessions_streamer_drains() {
    let world = LeaseWorld::connected().await;
    let lease = world.take_lease("streamer-a").await;
    let serving = world.heartbeat(1).await;

    world.store.mark_draining(&lease).await.unwrap();
    let draining = world.heartbeat(2).await;

    assert_eq!(serving["type"], "heartbeat_ack", "{serving}");
    assert!(serving["reconnect"].is_null(), "{serving}");
    assert_eq!(serving["served_by"], "streamer-a");
    assert_eq!(draining["reconnect"]["reason"], "draining", "{draining}");
    assert_eq!(draining["served_by"], "streamer-a");
}

#[tokio::test]
async fn a_heartbeat_advises_session_moved_once_when_another_streamer_took_the_session() {
    let world = LeaseWorld::connected().await;
    let before = world.heartbeat(1).await;
    let a = world.take_lease("streamer-a").await;
    let first_seen = world.heartbeat(2).await;

    // streamer-a hands the session over; for a moment nobody holds it, then streamer-b does.
    world.store.release_lease(&a).await.unwrap();
    let between = world.heartbeat(3).await;
    world.take_lease("streamer-b").await;
    let moved = world.heartbeat(4).await;
    let after = world.heartbeat(5).await;

    assert!(before["served_by"].is_null(), "{before}");
    assert!(before["reconnect"].is_null(), "{before}");
    assert_eq!(first_seen["served_by"], "streamer-a", "{first_seen}");
    assert!(
        first_seen["reconnect"].is_null(),
        "a first sighting is no move: {first_seen}"
    );
    assert_eq!(between["served_by"], "streamer-a", "{between}");
    assert!(between["reconnect"].is_null(), "{between}");
    assert_eq!(moved["reconnect"]["reason"], "session_moved", "{moved}");
    assert_eq!(moved["served_by"], "streamer-b");
    assert!(after["reconnect"].is_null(), "advised once: {after}");
    assert_eq!(after["served_by"], "streamer-b");
}
