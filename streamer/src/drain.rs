//! The drain signal: one `watch` flag, set once at shutdown, that every long-lived part (the
//! server, each SSE connection, the pusher, the CloudWatch publisher) waits on.

use tokio::sync::watch;

/// Resolves once draining has started (the guard `wait_for` returns must not be held across an
/// await of a `Send` future). Every part that stops for a drain waits on this.
pub(crate) async fn drained(draining: &mut watch::Receiver<bool>) {
    let _ = draining.wait_for(|d| *d).await;
}

/// Whether draining has started, without waiting: one atomic load, for the SSE connections
/// that ask on every wake-up. The flag changes once, from `false` to `true`, so a change this
/// receiver has not marked seen (nothing here marks it) is the drain; a closed channel is too,
/// as for [`drained`].
pub(crate) fn is_draining(draining: &watch::Receiver<bool>) -> bool {
    draining.has_changed().unwrap_or(true)
}
