//! Linger: a stream without clients is kept for `linger` (a client that reconnects soon finds
//! the window it resumes from), then removed from the registry by its feed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::registry::Registry;
use super::stream::Stream;

/// Sleeps `delay`; then `true` (and the stream removed) if it has had no client for its
/// linger time meanwhile.
pub(crate) async fn wait_or_idle(
    registry: &Registry,
    stream: &Arc<Stream>,
    delay: Duration,
) -> bool {
    tokio::time::sleep(delay).await;
    idle_for_linger(registry, stream).await
}

/// `true` (and the stream removed) if the stream has had no client for its linger time,
/// waiting that long when it has none now; `false` at once while it has one.
pub(crate) async fn idle_for_linger(registry: &Registry, stream: &Arc<Stream>) -> bool {
    if stream.clients() > 0 {
        return false;
    }
    tokio::time::sleep(stream.settings().linger).await;
    stream.clients() == 0 && registry.remove_if_idle(stream)
}

/// How often a stream's feed looks whether the stream still has clients.
pub(crate) const IDLE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Waits until the stream has had no client for its linger time (counted from its last client,
/// or from now if it has none), then removes it: the end of a stream whose upstream is over.
/// Checked every [`IDLE_CHECK_EVERY`] rather than by sleeping the linger and then the linger
/// again, which kept an ended stream (its window, its books) for twice the linger.
pub(crate) async fn linger_out(registry: &Registry, stream: &Arc<Stream>) {
    let mut idle = IdleSince::default();
    let mut every = tokio::time::interval(IDLE_CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if idle.check(registry, stream) {
            return;
        }
    }
}

/// Since when a stream that keeps being read has had no client, checked now and then by its
/// feed (reading goes on while the stream lingers: a client that comes back finds it live).
#[derive(Debug, Default)]
pub(crate) struct IdleSince(Option<Instant>);

impl IdleSince {
    /// `true` (and the stream removed) once the stream has had no client at any check for its
    /// linger time; a client seen at a check starts the count over.
    pub(crate) fn check(&mut self, registry: &Registry, stream: &Arc<Stream>) -> bool {
        if stream.clients() > 0 {
            self.0 = None;
            return false;
        }
        self.0.get_or_insert_with(Instant::now).elapsed() >= stream.settings().linger
            && registry.remove_if_idle(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::client::{Start, Subscription};
    use crate::hub::stream::tests::{LINGER, stream_in};

    #[tokio::test(start_paused = true)]
    async fn a_stream_without_clients_is_removed_after_the_linger_not_before() {
        let registry = Arc::new(Registry::default());
        let stream = stream_in(&registry, "sim");
        let waiting = tokio::spawn({
            let (registry, stream) = (Arc::clone(&registry), Arc::clone(&stream));
            async move { idle_for_linger(&registry, &stream).await }
        });

        tokio::time::sleep(LINGER.saturating_sub(Duration::from_millis(1))).await;
        assert!(!waiting.is_finished(), "removed before the linger");
        assert_eq!(registry.all().len(), 1);

        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(waiting.await.unwrap(), "idle for the linger: removed");
        assert!(registry.all().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_comes_back_within_the_linger_keeps_the_stream() {
        let registry = Arc::new(Registry::default());
        let stream = stream_in(&registry, "sim");
        let waiting = tokio::spawn({
            let (registry, stream) = (Arc::clone(&registry), Arc::clone(&stream));
            async move { idle_for_linger(&registry, &stream).await }
        });

        tokio::time::sleep(LINGER / 2).await;
        let back = Subscription::new(Arc::clone(&stream), Start::Snapshot);
        tokio::time::sleep(LINGER).await;

        assert!(!waiting.await.unwrap(), "a client is back: kept");
        assert_eq!(registry.all().len(), 1);
        drop(back);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_stream_without_clients_is_removed_one_linger_later_not_two() {
        let registry = Arc::new(Registry::default());
        let stream = stream_in(&registry, "sim");
        let lingering = tokio::spawn({
            let (registry, stream) = (Arc::clone(&registry), Arc::clone(&stream));
            async move { linger_out(&registry, &stream).await }
        });

        tokio::time::sleep(LINGER.saturating_sub(Duration::from_millis(1))).await;
        assert_eq!(registry.all().len(), 1, "removed before the linger");
        tokio::time::sleep(IDLE_CHECK_EVERY + Duration::from_millis(1)).await;

        assert!(lingering.is_finished(), "still kept past the linger");
        assert!(registry.all().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_stream_is_kept_while_a_client_reads_it_and_a_linger_after() {
        let registry = Arc::new(Registry::default());
        let stream = stream_in(&registry, "sim");
        let client = Subscription::new(Arc::clone(&stream), Start::Snapshot);
        let lingering = tokio::spawn({
            let (registry, stream) = (Arc::clone(&registry), Arc::clone(&stream));
            async move { linger_out(&registry, &stream).await }
        });

        tokio::time::sleep(LINGER * 3).await;
        assert_eq!(registry.all().len(), 1, "a client reads it: kept");
        drop(client);
        tokio::time::sleep(LINGER + IDLE_CHECK_EVERY * 2).await;

        assert!(lingering.is_finished());
        assert!(registry.all().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_stream_is_removed_after_the_linger_counted_from_its_last_client() {
        let registry = Registry::default();
        let stream = stream_in(&registry, "sim");
        let mut idle = IdleSince::default();
        assert!(!idle.check(&registry, &stream), "the count starts");

        tokio::time::advance(LINGER / 2).await;
        let back = Subscription::new(Arc::clone(&stream), Start::Snapshot);
        assert!(!idle.check(&registry, &stream), "a client: the count stops");
        drop(back);
        assert!(
            !idle.check(&registry, &stream),
            "gone again: the count starts over"
        );
        tokio::time::advance(LINGER.saturating_sub(Duration::from_millis(1))).await;
        assert!(!idle.check(&registry, &stream), "not yet the linger since");

        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(idle.check(&registry, &stream));
        assert!(registry.all().is_empty());
    }
}
