//! The WebSocket API's routes (`$connect`, `heartbeat`, `$disconnect`, `$default`) as one Lambda.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use session_core::component::Component;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let settings = session_functions::wiring::init(Component::WsHandler).await?;
    let handler = &session_functions::wiring::ws_handler_from_settings(&settings).await?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            let response = handler.get().handle(&event.payload).await;
            // Before the invocation ends: a frozen environment exports nothing.
            session_core::telemetry::flush().await;
            Ok::<_, lambda_runtime::Error>(response)
        },
    ))
    .await
}
