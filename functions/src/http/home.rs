//! A session's home region at the REST edge (`docs/multi-region.md`): a write served by another
//! region answers `421` `wrong-region` before anything is claimed (idempotency key included) or
//! written; a read of a session names its home in [`SESSION_HOME`] and how far behind it this
//! region's replica is in [`REPLICA_LAG`].

use axum::http::{HeaderName, HeaderValue};
use session_core::auth::Principal;
use session_core::domain::{Session, SessionId};

use super::App;
use super::problem::ApiError;

/// `X-Session-Home: <region>; epoch=<n>` on reads of a multi-region deployment.
pub const SESSION_HOME: HeaderName = HeaderName::from_static("x-session-home");

/// Refuses a write to `session_id` (as it came in the path) unless this region is its home. A
/// malformed id passes: the handler refuses it as it always has.
pub(super) async fn check_write(
    app: &App,
    caller: &Principal,
    session_id: &str,
) -> Result<(), ApiError> {
    match SessionId::parse("session_id", session_id) {
        Ok(id) => Ok(app.service.check_write_home(caller, &id).await?),
        Err(_) => Ok(()),
    }
}

/// `X-Replica-Lag-Ms: <n>` on reads of a multi-region deployment: how far behind the session's
/// home this region's replica may be (0 at the home).
pub const REPLICA_LAG: HeaderName = HeaderName::from_static("x-replica-lag-ms");

/// The headers of a read of `session` in a multi-region deployment: [`SESSION_HOME`] naming its
/// home, and [`REPLICA_LAG`] once the home's beat has been seen here.
pub(super) async fn headers(app: &App, session: &Session) -> Vec<(HeaderName, HeaderValue)> {
    let Some((region, epoch)) = app.service.home_of(session) else {
        return Vec::new();
    };
    let mut headers = Vec::with_capacity(2);
    if let Ok(home) = HeaderValue::from_str(&format!("{region}; epoch={epoch}")) {
        headers.push((SESSION_HOME, home));
    }
    if let Some(lag) = app.service.replica_lag(session).await {
        headers.push((REPLICA_LAG, HeaderValue::from(lag.as_millis() as u64)));
    }
    headers
}
