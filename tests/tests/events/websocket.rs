//! The WebSocket API's samples: the `$connect` authorizer and the routes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use session_core::clock::{Clock, SystemClock};
use session_core::config::Settings;
use session_core::domain::{SessionId, UserId};
use session_core::store::{InMemoryStore, SharedStore};
use session_local::simulator::{SimulatorHandle, SimulatorServer, SimulatorSettings};

use crate::world::{seed, settings};
use crate::{SESSION_ID, USER, events_dir, load};

/// Samples of the WebSocket API's `$connect` REQUEST authorizer (`ws-authorizer`).
pub(crate) const WS_AUTHORIZER_FILES: &[&str] = &["ws-authorizer.json"];

/// Samples of the WebSocket routes (`ws-handler`).
pub(crate) const WS_ROUTE_FILES: &[&str] = &[
    "ws-connect.json",
    "ws-heartbeat.json",
    "ws-default.json",
    "ws-disconnect.json",
];

/// Stands for a connect ticket in the WebSocket samples; the authorizer refuses it as it is.
const TICKET_PLACEHOLDER: &str = "REPLACE_WITH_A_TICKET";

/// What the WebSocket functions' use cases are built from, with the sample session in place.
async fn ws_world() -> anyhow::Result<(
    session_core::service::ServiceParts,
    Settings,
    SharedStore,
    SimulatorHandle,
)> {
    let simulator = SimulatorServer::spawn(SimulatorSettings::default())
        .await
        .context("spawning the simulator service")?;
    let mut settings = settings(simulator.endpoint());
    // The samples' handshakes come from the frontend's page.
    settings.websocket.allowed_origins = vec!["https://app.example.com".to_owned()];
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: SharedStore = Arc::new(InMemoryStore::new(clock.clone()));
    let backend = session_functions::wiring::simulator_backend(&settings)?;
    seed(&settings, &store, backend.as_ref(), clock.as_ref()).await?;
    let parts = session_core::service::ServiceParts::from_settings(
        &settings,
        store.clone(),
        backend,
        clock,
    );
    Ok((parts, settings, store, simulator))
}

pub(crate) async fn run_ws_authorizer(file: &str) -> anyhow::Result<()> {
    let (parts, settings, _store, _simulator) = ws_world().await?;
    let service = session_core::service::ConnectAuthorizer::new(&parts);
    let text = std::fs::read_to_string(events_dir().join(file))?;
    ensure!(
        text.contains(TICKET_PLACEHOLDER),
        "the sample must carry the placeholder {TICKET_PLACEHOLDER} where the ticket goes"
    );
    let decide = |text: String| {
        let service = service.clone();
        async move {
            let event: aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest =
                serde_json::from_str(&text)
                    .context("not an API Gateway WebSocket REQUEST authorizer event")?;
            let verdict = session_functions::websocket::authorize_connect(&service, &event).await?;
            anyhow::Ok(serde_json::to_value(verdict)?)
        }
    };
    let effect = |v: &Value| v["policyDocument"]["Statement"][0]["Effect"].clone();

    let as_is = decide(text.clone()).await?;
    ensure!(
        effect(&as_is) == "Deny",
        "the file as it is must be refused, got {as_is}"
    );

    let key = settings
        .auth
        .ticket_signing_key()
        .cloned()
        .context("a ticket signing key")?;
    let signer = session_core::auth::TicketSigner::new(key, Duration::from_secs(60));
    let (ticket, _) = signer.issue(
        &SessionId::parse("session_id", SESSION_ID)?,
        &session_core::auth::Principal {
            user: UserId::parse("user", USER)?,
            scopes: vec![],
            expires_at: SystemClock.now().plus(Duration::from_secs(3600)),
            token_id: "fixture-token".to_owned(),
        },
        session_core::domain::Transport::Ws,
        SystemClock.now(),
    )?;
    let fresh = text.replace(TICKET_PLACEHOLDER, &ticket);
    let allowed = decide(fresh.clone()).await?;
    ensure!(
        effect(&allowed) == "Allow",
        "a fresh ticket must be allowed, got {allowed}"
    );
    ensure!(
        allowed["context"]["session_id"] == SESSION_ID && allowed["context"]["user"] == USER,
        "the context names the session and the user, got {}",
        allowed["context"]
    );
    let replayed = decide(fresh).await?;
    ensure!(
        effect(&replayed) == "Deny",
        "a ticket admits one connection only, got {replayed}"
    );
    Ok(())
}

pub(crate) async fn run_ws_route(file: &str) -> anyhow::Result<()> {
    let (parts, _settings, store, _simulator) = ws_world().await?;
    let service = session_core::service::ConnectionService::new(&parts);
    let handle = |name: &'static str| {
        let service = service.clone();
        async move {
            let event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest =
                serde_json::from_value(load(name)?)
                    .with_context(|| format!("{name} is not an API Gateway WebSocket event"))?;
            let response = session_functions::websocket::handle(&service, &event).await;
            let frame = match &response.body {
                Some(aws_lambda_events::encodings::Body::Text(text)) => serde_json::from_str(text)?,
                _ => Value::Null,
            };
            anyhow::Ok((response.status_code, frame))
        }
    };
    let connections = || async {
        anyhow::Ok(
            store
                .list_connections(&SessionId::parse("session_id", SESSION_ID)?)
                .await?
                .len(),
        )
    };
    match file {
        "ws-connect.json" => {
            let (status, _) = handle("ws-connect.json").await?;
            ensure!(status == 200, "$connect answers 200, got {status}");
            ensure!(connections().await? == 1, "$connect records the connection");
        }
        "ws-heartbeat.json" => {
            let (_, gone) = handle("ws-heartbeat.json").await?;
            ensure!(
                gone["code"] == "connection_gone",
                "without a connection: {gone}"
            );
            handle("ws-connect.json").await?;
            let (status, ack) = handle("ws-heartbeat.json").await?;
            ensure!(
                status == 200 && ack["type"] == "heartbeat_ack" && ack["seq"] == 1,
                "{ack}"
            );
            ensure!(ack["resume"]["session_id"] == SESSION_ID, "{ack}");
        }
        "ws-default.json" => {
            let (status, error) = handle("ws-default.json").await?;
            ensure!(
                status == 200 && error["code"] == "unknown_action",
                "{error}"
            );
            ensure!(
                error["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("subscribe"),
                "{error}"
            );
        }
        "ws-disconnect.json" => {
            handle("ws-connect.json").await?;
            let (first, _) = handle("ws-disconnect.json").await?;
            let (again, _) = handle("ws-disconnect.json").await?;
            ensure!(
                first == 200 && again == 200,
                "$disconnect answers 200 twice, got {first}, {again}"
            );
            ensure!(
                connections().await? == 0,
                "$disconnect removes the connection"
            );
        }
        other => bail!("no WebSocket case for {other}"),
    }
    Ok(())
}
