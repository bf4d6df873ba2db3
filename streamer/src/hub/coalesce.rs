//! Coalesces the wake-ups of a stream's clients: the first publish after a quiet spell wakes
//! them at once; publishes that follow within `window` wake them once, at its end. A busy
//! stream so hands each client several events per write (fewer syscalls on both sides) for at
//! most `window` of added latency; a quiet one adds none.

use std::time::Duration;

use tokio::time::Instant;

use super::stream::Stream;

/// The coalescing of one stream's wake-ups (owned by its feed).
#[derive(Debug)]
pub(crate) struct Coalescer {
    window: Duration,
    last: Instant,
    due: Option<Instant>,
}

impl Coalescer {
    /// No wake-up yet: the first publish wakes at once.
    pub(crate) fn new(window: Duration) -> Self {
        let now = Instant::now();
        Self {
            window,
            last: now.checked_sub(window).unwrap_or(now),
            due: None,
        }
    }

    /// Something was published: wakes now, or schedules one wake-up at the window's end.
    pub(crate) fn published(&mut self, stream: &Stream) {
        if self.due.is_some() {
            return;
        }
        let now = Instant::now();
        if now >= self.last + self.window {
            self.last = now;
            stream.wake();
        } else {
            self.due = Some(self.last + self.window);
        }
    }

    /// Whether a wake-up is scheduled.
    pub(crate) fn pending(&self) -> bool {
        self.due.is_some()
    }

    /// Resolves when the scheduled wake-up is due (at once when none is).
    pub(crate) async fn due(&self) {
        if let Some(due) = self.due {
            tokio::time::sleep_until(due).await;
        }
    }

    /// The scheduled wake-up.
    pub(crate) fn fire(&mut self, stream: &Stream) {
        self.due = None;
        self.last = Instant::now();
        stream.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::stream::tests::stream;

    const WINDOW: Duration = Duration::from_millis(10);

    #[tokio::test(start_paused = true)]
    async fn the_first_publish_after_a_quiet_spell_wakes_clients_at_once() {
        let stream = stream("sim");
        let woken = stream.watch();
        let mut coalescer = Coalescer::new(WINDOW);

        coalescer.published(&stream);

        assert!(woken.has_changed().unwrap());
        assert!(!coalescer.pending());
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_within_the_window_wake_clients_once_at_its_end() {
        let stream = stream("sim");
        let mut coalescer = Coalescer::new(WINDOW);
        coalescer.published(&stream);
        let mut woken = stream.watch();
        woken.mark_unchanged();

        tokio::time::advance(Duration::from_millis(3)).await;
        coalescer.published(&stream);
        coalescer.published(&stream);
        assert!(!woken.has_changed().unwrap(), "held for the window");
        assert!(coalescer.pending());

        let started = Instant::now();
        coalescer.due().await;
        coalescer.fire(&stream);

        assert_eq!(
            started.elapsed(),
            Duration::from_millis(7),
            "at the window's end"
        );
        assert!(woken.has_changed().unwrap());
        assert!(!coalescer.pending());
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_after_the_window_wakes_at_once_again() {
        let stream = stream("sim");
        let mut coalescer = Coalescer::new(WINDOW);
        coalescer.published(&stream);
        let mut woken = stream.watch();
        woken.mark_unchanged();

        tokio::time::advance(WINDOW).await;
        coalescer.published(&stream);

        assert!(woken.has_changed().unwrap());
        assert!(!coalescer.pending());
    }
}
