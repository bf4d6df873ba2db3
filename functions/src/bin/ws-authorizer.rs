//! The WebSocket API's `$connect` REQUEST authorizer Lambda: single-use ticket in, policy out.

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use session_core::component::Component;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let settings = session_functions::wiring::init(Component::WsAuthorizer).await?;
    let service = &session_functions::wiring::connect_authorizer(&settings).await?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            let verdict =
                session_functions::websocket::authorize_connect(service, &event.payload).await;
            // Before the invocation ends: a frozen environment exports nothing.
            session_core::telemetry::flush().await;
            verdict.map_err(|e| lambda_runtime::Diagnostic {
                error_type: "ConnectAuthorizerFailed".to_owned(),
                error_message: e.to_string(),
            })
        },
    ))
    .await
}
