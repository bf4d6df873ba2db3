//! The WebSocket functions fed API Gateway WebSocket events (`$connect` authorizer and the
//! routes' handler) over the local stack's service: tickets are single-use, connections count
//! against the quota, heartbeats measure and advise, unknown actions get an error frame.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyResponse,
    ApiGatewayWebsocketProxyRequest,
};
use serde_json::{Value, json};
use session_functions::websocket::{authorize_connect, handle};

use crate::helpers::{TestApi, User};

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

fn frame(response: &ApiGatewayProxyResponse) -> Value {
    match &response.body {
        Some(aws_lambda_events::encodings::Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("no text frame: {other:?}"),
    }
}

/// Authorizes and connects with a fresh ticket; returns the authorizer context.
async fn connect(api: &TestApi, user: &User, session: &str, connection: &str) -> (Value, i64) {
    let ticket = user.ws_ticket(session).await.0;
    let verdict = authorize_connect(api.stack.service(), &authorizer_event(Some(&ticket)))
        .await
        .unwrap();
    let verdict = serde_json::to_value(&verdict).unwrap();
    let context = verdict["context"].clone();
    let connected = handle(
        api.stack.service(),
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

    let first = authorize_connect(api.stack.service(), &authorizer_event(Some(&ticket)))
        .await
        .unwrap();
    let replay = authorize_connect(api.stack.service(), &authorizer_event(Some(&ticket)))
        .await
        .unwrap();
    let missing = authorize_connect(api.stack.service(), &authorizer_event(None))
        .await
        .unwrap();
    let forged = authorize_connect(api.stack.service(), &authorizer_event(Some("e30.e30.AAAA")))
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
        let verdict = authorize_connect(api.stack.service(), &authorizer_event(Some(ticket)))
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
    let service = api.stack.service();

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
    let service = api.stack.service();

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
    let service = api.stack.service();

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
