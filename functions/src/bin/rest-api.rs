//! The REST control plane Lambda: the axum router, run by `lambda_http`.

use session_core::component::Component;
use session_functions::http::edge;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let settings = session_functions::wiring::init(Component::RestApi).await?;
    let app = session_functions::wiring::rest_api(&settings).await?;
    let router = session_functions::http::router(app);
    // Behind CloudFront and AWS WAF (edge.origin_secret_arn), only what came through them.
    let router = match edge::guard_from_env(&settings.edge, Component::RestApi).await? {
        Some(guard) => edge::behind_edge(router, guard),
        None => router,
    };
    lambda_http::run(router).await
}
