//! The drain signal: one `watch` flag, set once at shutdown, that every long-lived part (the
//! server, each SSE connection, the pusher, the CloudWatch publisher) waits on.

use tokio::sync::watch;

/// Resolves once draining has started (the guard `wait_for` returns must not be held across an
/// await of a `Send` future). Every part that stops for a drain waits on this.
pub(crate) async fn drained(draining: &mut watch::Receiver<bool>) {
    let _ = draining.wait_for(|d| *d).await;
}
