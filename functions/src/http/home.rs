//! A session's home region at the REST edge (`docs/multi-region.md`): a write served by another
//! region answers `421` `wrong-region` before anything is claimed (idempotency key included) or
//! written; a read of a session names its home in [`SESSION_HOME`].

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

/// The [`SESSION_HOME`] header naming `session`'s home, in a multi-region deployment.
pub(super) fn header(app: &App, session: &Session) -> Option<(HeaderName, HeaderValue)> {
    let (region, epoch) = app.service.home_of(session)?;
    let value = HeaderValue::from_str(&format!("{region}; epoch={epoch}")).ok()?;
    Some((SESSION_HOME, value))
}
