//! Fault injection for chaos tests: ending and stalling streams, failing `Start`.
//!
//! Faults are switched at start-up through [`FaultConfig`] or at run time through the
//! `simulator.v1.FaultInjection` service (local reference simulator only, not part of the
//! production contract). Restarting an instance is [`Instance::restart`](super::instance).
//!
//! Stream faults of an instance live in a `watch` channel ([`StreamFaultPlan`]) that every open
//! stream of the instance selects on, so they apply at once and cost nothing when unused.

use std::time::Duration;

use tokio::time::Instant;

/// Faults armed when the simulator starts; `ClearFaults` disarms them like any other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// The first this many `Start` calls answer UNAVAILABLE.
    pub unavailable_starts: u32,
    /// Every `Start` call answers UNAVAILABLE for this long after the server is built.
    pub unavailable_for: Duration,
    /// Every stream ends with UNAVAILABLE after this many events (snapshots included).
    pub end_streams_after: Option<u64>,
}

/// The stream faults of one instance, as its open streams see them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamFaultPlan {
    /// Streams send nothing until then.
    pub(crate) stall_until: Option<Instant>,
    /// Open streams end after this many more events.
    pub(crate) end_open_after: Option<u64>,
    /// Counts `EndStreams` orders for open streams, and never goes back (not even on
    /// `ClearFaults`): a stream applies `end_open_after` only for an order newer than the last
    /// one it saw, so a stream opened after an order is not cut by it when the plan changes
    /// for another reason (a stall).
    pub(crate) cut_order: u64,
}

/// Streams to be opened that will end early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PendingCuts {
    /// How many of the next subscriptions are cut.
    pub(crate) streams: u32,
    /// After how many events each is cut.
    pub(crate) after_events: u64,
}

impl PendingCuts {
    /// The cut of the next subscription, if it gets one.
    pub(crate) fn take(&mut self) -> Option<u64> {
        if self.streams == 0 {
            return None;
        }
        self.streams -= 1;
        Some(self.after_events)
    }
}

/// When `Start` answers UNAVAILABLE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StartFaults {
    /// The next this many calls fail.
    pub(crate) remaining: u32,
    /// Every call fails until then.
    pub(crate) until: Option<Instant>,
}

impl StartFaults {
    /// Arms `count` failures and failures for `duration` from `now`.
    pub(crate) fn arm(&mut self, count: u32, duration: Duration, now: Instant) {
        self.remaining = count;
        self.until = (!duration.is_zero()).then(|| now + duration);
    }

    /// Whether the call at `now` fails; consumes one counted failure.
    pub(crate) fn fail_now(&mut self, now: Instant) -> bool {
        if self.until.is_some_and(|until| now < until) {
            return true;
        }
        if self.remaining > 0 {
            self.remaining -= 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_start_failures_run_out() {
        let now = Instant::now();
        let mut faults = StartFaults::default();
        faults.arm(2, Duration::ZERO, now);
        assert!(faults.fail_now(now));
        assert!(faults.fail_now(now));
        assert!(!faults.fail_now(now));
    }

    #[test]
    fn timed_start_failures_end_with_their_duration() {
        let now = Instant::now();
        let mut faults = StartFaults::default();
        faults.arm(0, Duration::from_secs(1), now);
        assert!(faults.fail_now(now + Duration::from_millis(999)));
        assert!(!faults.fail_now(now + Duration::from_secs(1)));
    }

    #[test]
    fn pending_cuts_apply_to_the_next_streams_only() {
        let mut cuts = PendingCuts {
            streams: 1,
            after_events: 5,
        };
        assert_eq!(cuts.take(), Some(5));
        assert_eq!(cuts.take(), None);
    }
}
