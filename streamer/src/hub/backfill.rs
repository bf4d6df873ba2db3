//! Backfill orchestration: a client that resumes from just before the window gets exactly the
//! events it missed, fetched from the simulator's own window by the upstream and prepended to
//! the stream's window (see [`Stream::finish_backfill`]).

use std::sync::Arc;
use std::time::Duration;

use session_core::domain::EventId;

use super::stream::Stream;
use crate::upstream::Upstream;

/// Longest a backfill may take; the clients waiting for it get a reset after that.
const DEADLINE: Duration = Duration::from_secs(3);

/// Fetches the events after `from` up to the window's first and hands them to `stream`
/// (whose `generation` asked for them; a reset meanwhile voids the fetch).
pub(crate) async fn run(upstream: Upstream, stream: Arc<Stream>, generation: u64, from: EventId) {
    let scales = stream.scales();
    let fetch = upstream.fetch_after(&stream.key, from, || stream.backfill_target(generation));
    let fetched = match tokio::time::timeout(DEADLINE, fetch).await {
        Ok(Ok(events)) => Ok(events),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {DEADLINE:?}")),
    };
    stream.finish_backfill(generation, from.sequence, fetched, &scales);
}
