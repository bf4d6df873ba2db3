//! `/v1/sessions/{session_id}/simulators/...`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use session_core::domain::{NewSimulator, SessionId, SimulatorId, SimulatorStatus, Symbol};

use super::App;
use super::caller::Caller;
use super::dto::{BookBody, SimulatorBody, StartSimulator};
use super::home;
use super::idempotency::{self, Post, Reply};
use super::input;
use super::problem::{ApiError, Problem};

/// Starts a simulator in one of the caller's active sessions. The answer is the simulator after
/// the simulator service answered: `running` (or `starting`), or `failed` with a reason.
#[utoipa::path(
    post, path = "/v1/sessions/{session_id}/simulators", operation_id = "startSimulator", tag = "simulators",
    params(("session_id" = String, Path, description = "The session's id.")),
    request_body(content = StartSimulator, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; see `status`", body = SimulatorBody,
         headers(("Location" = String, description = "The simulator's URL"))),
        (status = 409, description = "The session is closed (`session-closed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The simulator service refused the request (`simulator-refused`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Simulators-per-session quota reached", body = Problem, content_type = "application/problem+json"),
        (status = 421, description = "The session is homed in another region (`wrong-region`): nothing was done; resend to `home_api`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["sessions:write"]))
)]
pub(super) async fn start(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(session_id): Path<String>,
    post: Post,
) -> Result<Response, ApiError> {
    home::check_write(&app, &caller, &session_id).await?;
    idempotency::once(&app, &caller, &post, async {
        let session_id = SessionId::parse("session_id", &session_id)?;
        let request: StartSimulator = input::json(&post.headers, &post.body)?;
        let request =
            NewSimulator::parse(&request.symbols, request.seed, request.events_per_second)?;
        let simulator = app
            .service
            .start_simulator(&caller, &session_id, request)
            .await?;
        Ok(
            Reply::json(StatusCode::ACCEPTED, &SimulatorBody::from(&simulator))?.at(format!(
                "/v1/sessions/{session_id}/simulators/{}",
                simulator.id
            )),
        )
    })
    .await
}

/// One simulator, its status reconciled with the simulator service. A stopped (`DELETE`d)
/// simulator is gone from the moment its stop was asked (`stopping` included): `404`
/// `deleted`; its session's detail still lists it. A `failed` one was not deleted: `200`.
#[utoipa::path(
    get, path = "/v1/sessions/{session_id}/simulators/{simulator_id}", operation_id = "getSimulator", tag = "simulators",
    params(
        ("session_id" = String, Path, description = "The session's id."),
        ("simulator_id" = String, Path, description = "The simulator's id."),
    ),
    responses(
        (status = 200, description = "The simulator", body = SimulatorBody),
        (status = 422, description = "The simulator service refused the request (`simulator-refused`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["sessions:read"]))
)]
pub(super) async fn get(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((session_id, simulator_id)): Path<(String, String)>,
) -> Result<Json<SimulatorBody>, ApiError> {
    let (session_id, simulator_id) = ids(&session_id, &simulator_id)?;
    let simulator = app
        .service
        .get_simulator(&caller, &session_id, &simulator_id)
        .await?;
    if matches!(
        simulator.status,
        SimulatorStatus::Stopping | SimulatorStatus::Stopped
    ) {
        return Err(ApiError::Deleted {
            entity: "simulator",
            id: simulator_id.to_string(),
            state: simulator.status.as_str(),
        });
    }
    Ok(Json(SimulatorBody::from(&simulator)))
}

/// The authoritative order book of one symbol, with the event id it reflects; `404` for a
/// symbol the simulator does not have.
#[utoipa::path(
    get, path = "/v1/sessions/{session_id}/simulators/{simulator_id}/book", operation_id = "getSimulatorBook", tag = "simulators",
    params(
        ("session_id" = String, Path, description = "The session's id."),
        ("simulator_id" = String, Path, description = "The simulator's id."),
        ("symbol" = String, Query, description = "One of the simulator's symbols."),
    ),
    responses(
        (status = 200, description = "The book", body = BookBody),
        (status = 409, description = "The simulator is not running", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The simulator service refused the request (`simulator-refused`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["sessions:read"]))
)]
pub(super) async fn book(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((session_id, simulator_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<BookBody>, ApiError> {
    let (session_id, simulator_id) = ids(&session_id, &simulator_id)?;
    let params = input::query(raw.as_deref(), &["symbol"])?;
    let symbol = params.get("symbol").ok_or_else(|| {
        ApiError::from(session_core::domain::ValidationError::new(
            "symbol",
            "is required",
        ))
    })?;
    let symbol = Symbol::parse("symbol", symbol)?;
    let book = app
        .service
        .simulator_book(&caller, &session_id, &simulator_id, &symbol)
        .await?;
    Ok(Json(BookBody::from(&book)))
}

/// Stops a simulator. Idempotent. `200` once stopped; `202` while the simulator service has not
/// confirmed yet (`stopping`: repeat the `DELETE` to learn when it has). Afterwards `GET` of it
/// answers `404` `deleted`.
#[utoipa::path(
    delete, path = "/v1/sessions/{session_id}/simulators/{simulator_id}", operation_id = "stopSimulator", tag = "simulators",
    params(
        ("session_id" = String, Path, description = "The session's id."),
        ("simulator_id" = String, Path, description = "The simulator's id."),
    ),
    responses(
        (status = 200, description = "Stopped (or had failed)", body = SimulatorBody),
        (status = 202, description = "Stopping", body = SimulatorBody),
        (status = 421, description = "The session is homed in another region (`wrong-region`): nothing was done; resend to `home_api`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The simulator service refused the request (`simulator-refused`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["sessions:write"]))
)]
pub(super) async fn stop(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((session_id, simulator_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    home::check_write(&app, &caller, &session_id).await?;
    let (session_id, simulator_id) = ids(&session_id, &simulator_id)?;
    let simulator = app
        .service
        .stop_simulator(&caller, &session_id, &simulator_id)
        .await?;
    let status = if simulator.status == SimulatorStatus::Stopping {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(SimulatorBody::from(&simulator))).into_response())
}

fn ids(session_id: &str, simulator_id: &str) -> Result<(SessionId, SimulatorId), ApiError> {
    Ok((
        SessionId::parse("session_id", session_id)?,
        SimulatorId::parse("simulator_id", simulator_id)?,
    ))
}
