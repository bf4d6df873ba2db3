//! What the functions rebuild when the runtime settings change (`settings` profile, read at
//! the poll of the AppConfig extension): the REST router with its use cases and rate limiters,
//! the WebSocket handler. Rebuilt at the first use after a change, never on the request path
//! otherwise: [`Rebuilt::get`] is a lock and a version check.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::Request;
use session_core::appconfig::{LiveDocument, Runtime};
use session_core::config::Settings;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// The builder of a [`Rebuilt`] value.
type Build<T> = Box<dyn Fn(&Settings) -> T + Send + Sync>;

/// A value built from the settings in force, rebuilt at its first use after they change.
pub struct Rebuilt<T> {
    state: Mutex<(watch::Receiver<Arc<Runtime>>, T)>,
    build: Build<T>,
}

impl<T> std::fmt::Debug for Rebuilt<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rebuilt").finish_non_exhaustive()
    }
}

impl<T: Clone> Rebuilt<T> {
    /// `build` of `live`'s settings now, and again after each change.
    pub fn new(
        live: &LiveDocument<Runtime>,
        build: impl Fn(&Settings) -> T + Send + Sync + 'static,
    ) -> Self {
        let changes = live.subscribe();
        let value = build(&changes.borrow().settings);
        Self {
            state: Mutex::new((changes, value)),
            build: Box::new(build),
        }
    }

    /// The value of the settings in force.
    pub fn get(&self) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (changes, value) = &mut *state;
        if changes.has_changed().unwrap_or(false) {
            let settings = changes.borrow_and_update().settings.clone();
            *value = (self.build)(&settings);
        }
        value.clone()
    }
}

/// A router that serves every request with the router of the settings in force.
pub fn live_router(routers: Arc<Rebuilt<Router>>) -> Router {
    Router::new().fallback_service(tower::service_fn(move |request: Request| {
        let router = routers.get();
        async move { router.oneshot(request).await }
    }))
}
