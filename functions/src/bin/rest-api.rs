//! The REST control plane Lambda: the axum router, run by `lambda_http`.

use session_core::component::Component;
use session_functions::http::edge;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let settings = session_functions::wiring::init(Component::RestApi).await?;
    let router = session_functions::wiring::live_rest_api(&settings).await?;
    // Behind CloudFront and AWS WAF (edge.origin_secret_arn), only what came through them.
    let router = match edge::guard_from_env(&settings.edge, Component::RestApi).await? {
        Some(guard) => edge::behind_edge(router, guard),
        None => router,
    };
    // Spans are exported before the response leaves: a frozen environment exports nothing.
    // Not lambda_runtime's OpenTelemetryLayer: its flush is synchronous (it would block the
    // worker the exporter's channel runs on) and its invocation span cannot continue the
    // request's `traceparent` (see docs/architecture.md, "Configuration and telemetry").
    let router = router.layer(axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            let response = next.run(request).await;
            session_core::telemetry::flush().await;
            response
        },
    ));
    lambda_http::run(router).await
}
