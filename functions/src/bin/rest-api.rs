//! The REST control plane Lambda: the axum router, run by `lambda_http`.

use session_core::config::Settings;
use session_core::telemetry;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let settings = Settings::load(None)?;
    telemetry::init(&settings.telemetry)?;
    let app = session_functions::wiring::rest_api(&settings).await?;
    lambda_http::run(session_functions::http::router(app)).await
}
