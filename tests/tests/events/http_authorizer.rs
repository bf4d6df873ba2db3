//! The HTTP API's REQUEST authorizer sample, refused as it is and allowed with a fresh token.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use serde_json::Value;
use session_core::clock::{Clock, SystemClock};
use session_core::config::Settings;
use session_local::auth::{AuthHandle, AuthServer, AuthSettings};

use crate::rest::listed_sessions;
use crate::world::{invoke, world};
use crate::{SCOPES, TOKEN_PLACEHOLDER, USER, events_dir, load};

/// Samples of the REQUEST authorizer (payload 2.0).
pub(crate) const AUTHORIZER_FILES: &[&str] = &["authorizer.json"];

pub(crate) async fn run_authorizer(file: &str) -> anyhow::Result<()> {
    let auth = AuthServer::spawn(AuthSettings::default())
        .await
        .context("spawning the auth service")?;
    let mut settings = Settings::default();
    settings.backends.auth_url = auth.endpoint();
    let validator = session_functions::wiring::token_validator(&settings)?;
    let text = std::fs::read_to_string(events_dir().join(file))?;
    ensure!(
        text.contains(TOKEN_PLACEHOLDER),
        "the sample must carry the placeholder {TOKEN_PLACEHOLDER} where the token goes"
    );

    let as_is = authorize(&validator, &text).await?;
    ensure!(
        as_is["isAuthorized"] == false && as_is.get("context").is_none_or(Value::is_null),
        "the file as it is must be refused, got {as_is}"
    );

    let allowed = authorize(&validator, &with_fresh_token(&auth, &text)?).await?;
    ensure!(
        allowed["isAuthorized"] == true,
        "a fresh token must be allowed, got {allowed}"
    );
    let context = &allowed["context"];
    ensure!(
        context["user"] == USER && context["scopes"] == SCOPES.join(" "),
        "the context names the token's subject and scopes, got {context}"
    );
    ensure!(
        context["expires_at"]
            .as_i64()
            .is_some_and(|t| t > SystemClock.now().unix_millis() / 1000),
        "the context carries the token's expiry, got {context}"
    );
    caller_context_reaches_the_handlers(context).await
}

/// The sample with a token minted now for the samples' caller in place of the placeholder.
fn with_fresh_token(auth: &AuthHandle, text: &str) -> anyhow::Result<String> {
    let token = auth.auth().issue(USER, &SCOPES, Duration::from_secs(300))?;
    Ok(text.replace(TOKEN_PLACEHOLDER, &token))
}

async fn authorize(
    validator: &session_core::auth::GrpcTokenValidator,
    text: &str,
) -> anyhow::Result<Value> {
    let event: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_str(text)
        .context("not an API Gateway HTTP API REQUEST authorizer (payload 2.0) event")?;
    let response = session_functions::http_authorizer::authorize(validator, &event).await?;
    Ok(serde_json::to_value(response)?)
}

/// The authorizer's context, put where API Gateway puts it, is what the REST samples carry and
/// what the handlers accept.
async fn caller_context_reaches_the_handlers(context: &Value) -> anyhow::Result<()> {
    let mut event = load("sessions-list.json")?;
    let sample = &event["requestContext"]["authorizer"]["lambda"];
    let keys = |v: &Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    ensure!(
        keys(sample) == keys(context),
        "the REST samples' requestContext.authorizer.lambda has keys {:?}, the authorizer \
         returns {:?}",
        keys(sample),
        keys(context)
    );
    event["requestContext"]["authorizer"]["lambda"] = context.clone();
    let reply = invoke(&world(true).await?, event).await?;
    if reply.status != 200 {
        bail!(
            "GET /v1/sessions with the authorizer's context answered {}: {}",
            reply.status,
            reply.body
        );
    }
    listed_sessions(&reply)
}
