//! The REST control plane Lambda: the axum router, run by `lambda_http`.

use session_core::component::Component;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let settings = session_functions::wiring::init(Component::RestApi).await?;
    let app = session_functions::wiring::rest_api(&settings).await?;
    lambda_http::run(session_functions::http::router(app)).await
}
