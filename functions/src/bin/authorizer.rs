//! The HTTP API REQUEST authorizer Lambda: bearer token in, allow/deny and the caller out.

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use lambda_runtime::{LambdaEvent, service_fn};

use session_core::component::Component;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let settings = session_functions::wiring::init(Component::Authorizer).await?;
    let validator = session_functions::wiring::token_validator(&settings)?;
    let validator = &validator;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
            let verdict =
                session_functions::http_authorizer::authorize(validator, &event.payload).await;
            // Before the invocation ends: a frozen environment exports nothing.
            session_core::telemetry::flush().await;
            verdict
        },
    ))
    .await
}
