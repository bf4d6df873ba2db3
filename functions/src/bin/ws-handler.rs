//! The WebSocket API's routes (`$connect`, `heartbeat`, `$disconnect`, `$default`) as one Lambda.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use session_core::component::Component;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let settings = session_functions::wiring::init(Component::WsHandler).await?;
    let service = &session_functions::wiring::service(&settings, Component::WsHandler).await?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, lambda_runtime::Error>(
                session_functions::websocket::handle(service, &event.payload).await,
            )
        },
    ))
    .await
}
