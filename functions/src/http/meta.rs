//! `/v1/health` and `/v1/openapi.json`: public, no token needed.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use session_core::service::HealthStatus;

use super::App;
use super::dto::HealthBody;

/// `ok`, `degraded` (serving, a dependency failing) or `down` (503), with each dependency.
#[utoipa::path(
    get, path = "/v1/health", operation_id = "health", tag = "meta",
    responses(
        (status = 200, description = "ok or degraded", body = HealthBody),
        (status = 503, description = "down", body = HealthBody),
    )
)]
pub(super) async fn health(State(app): State<App>) -> Response {
    let health = app.service.health().await;
    let status = if health.status == HealthStatus::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(HealthBody::from(&health))).into_response()
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get, path = "/v1/openapi.json", operation_id = "openapiDocument", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub(super) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::json(),
    )
        .into_response()
}
