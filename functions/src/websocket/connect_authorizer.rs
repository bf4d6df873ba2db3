//! The `$connect` REQUEST authorizer: a handshake from a browser page whose `Origin` is not in
//! `websocket.allowed_origins` is refused first, its ticket untouched; then the ticket in
//! `?ticket=` (browsers cannot set headers on a WebSocket handshake) is checked and consumed
//! once; the session and user travel on as the authorizer's context, which API Gateway hands to
//! every later event of the connection.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde::{Deserialize, Serialize};
use session_core::domain::Compression;
use session_core::http::check_origin;
use session_core::service::{ConnectAuthorizer, ServiceError};
use tracing::{info, instrument};

/// What the handlers learn of a connection from its `$connect` authorizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectContext {
    /// The session the connection streams.
    pub session_id: String,
    /// The user the ticket was issued to.
    pub user: String,
    /// The consumed ticket's id, for audit logs.
    pub ticket_id: String,
    /// The push encoding the ticket granted (`none` or `deflate`; absent, as from an
    /// authorizer of an earlier release, means none). The local emulator reads it too.
    #[serde(default, skip_serializing_if = "Compression::is_none")]
    pub compression: Compression,
}

/// The authorizer's answer: an IAM policy (Allow on this route, or Deny) and the context.
pub type ConnectAuthorizerResponse = ApiGatewayCustomAuthorizerResponse<Option<ConnectContext>>;

/// Decides one `$connect`: Allow with the context, or Deny (API Gateway answers 403).
///
/// # Errors
/// The store could not be asked (API Gateway answers 500 and the handshake fails).
pub async fn authorize_connect(
    service: &ConnectAuthorizer,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ConnectAuthorizerResponse, ServiceError> {
    authorize_connect_with_metrics(service, event, &crate::metrics::Emf::stdout()).await
}

/// The same, its EMF line (operation `AuthorizeConnect`, outcome `allow`, `deny` or `error`)
/// written to `emf`.
///
/// # Errors
/// The store could not be asked.
pub async fn authorize_connect_with_metrics(
    service: &ConnectAuthorizer,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    emf: &crate::metrics::Emf,
) -> Result<ConnectAuthorizerResponse, ServiceError> {
    let started = std::time::Instant::now();
    let verdict = decide(service, event).await;
    let outcome = match &verdict {
        Ok(response)
            if response
                .policy_document
                .statement
                .iter()
                .all(|s| s.effect == IamPolicyEffect::Allow) =>
        {
            "allow"
        }
        Ok(_) => "deny",
        Err(_) => "error",
    };
    emf.record(
        "ws-authorizer",
        "AuthorizeConnect",
        outcome,
        started.elapsed(),
    );
    verdict
}

#[instrument(skip_all, fields(
    request_id = event.request_context.request_id.as_deref().unwrap_or(""),
    connection_id = connection_id(event),
    session_id = tracing::field::Empty,
))]
async fn decide(
    service: &ConnectAuthorizer,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ConnectAuthorizerResponse, ServiceError> {
    let resource = event.method_arn.clone().unwrap_or_default();
    // Before the ticket, so that a refused handshake spends none.
    if let Err(refused) = check_origin(service.websocket_origins(), &event.headers) {
        info!(reason = "origin", origin = %refused.0, "connect refused");
        return Ok(policy(IamPolicyEffect::Deny, resource, "anonymous", None));
    }
    let Some(ticket) = event.query_string_parameters.first("ticket") else {
        info!(reason = "no_ticket", "connect refused");
        return Ok(policy(IamPolicyEffect::Deny, resource, "anonymous", None));
    };
    match service.admit_connect(ticket).await {
        Ok(admission) => {
            let context = ConnectContext {
                session_id: admission.session_id.to_string(),
                user: admission.user.to_string(),
                ticket_id: admission.ticket_id.to_string(),
                compression: admission.compression,
            };
            tracing::Span::current().record("session_id", context.session_id.as_str());
            // The audit line of a consumed ticket: which connection spent it.
            info!(ticket_id = %context.ticket_id, user = %context.user, "connect allowed");
            let user = context.user.clone();
            Ok(policy(
                IamPolicyEffect::Allow,
                resource,
                &user,
                Some(context),
            ))
        }
        Err(
            // A ticket of another region is denied as well (API Gateway's 403); its region is
            // in the log line, since an authorizer's deny carries no body.
            e @ (ServiceError::TicketRefused(_)
            | ServiceError::TicketWrongRegion { .. }
            | ServiceError::TokenRevoked
            | ServiceError::NotFound { .. }
            | ServiceError::SessionClosed { .. }
            | ServiceError::Invalid(_)),
        ) => {
            info!(reason = %e, "connect refused");
            Ok(policy(IamPolicyEffect::Deny, resource, "anonymous", None))
        }
        Err(e) => Err(e),
    }
}

/// The connection being authorized: a WebSocket `$connect` event's request context carries
/// `connectionId`, a field aws_lambda_events keeps only among its catch-all fields.
fn connection_id(event: &ApiGatewayCustomAuthorizerRequestTypeRequest) -> &str {
    event
        .request_context
        .other
        .get("connectionId")
        .and_then(|id| id.as_str())
        .unwrap_or("")
}

fn policy(
    effect: IamPolicyEffect,
    resource: String,
    principal: &str,
    context: Option<ConnectContext>,
) -> ConnectAuthorizerResponse {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = effect;
    statement.resource = vec![resource];
    let mut document = ApiGatewayCustomAuthorizerPolicy::default();
    document.version = Some("2012-10-17".to_owned());
    document.statement = vec![statement];
    let mut response = ConnectAuthorizerResponse::default();
    response.principal_id = Some(principal.to_owned());
    response.policy_document = document;
    response.context = context;
    response
}
