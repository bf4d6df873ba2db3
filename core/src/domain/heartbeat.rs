//! Heartbeats of a WebSocket connection: what a client reports, how the connection's quality
//! follows from it, and when the client is advised to reconnect.
//!
//! Round-trip time is measured without trusting either clock against the other: the client says
//! which server time it saw last (`last_server_time`, from the previous acknowledgement) and when
//! it saw it on its own clock (`seen_at`). The server's span since it stamped that
//! acknowledgement, minus the client's span since it received it, is the time the two messages
//! spent in flight: one round trip.

use serde::{Deserialize, Serialize};

use super::{ConnectionQuality, Timestamp};

/// What a client sends with `{"action": "heartbeat", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The client's heartbeat counter, 1 for the first; gaps count as missed heartbeats.
    pub seq: u64,
    /// The client's clock when it sent this, in Unix milliseconds.
    pub client_time: i64,
    /// `server_time` of the last acknowledgement the client received, if any.
    pub last_server_time: Option<i64>,
    /// The client's clock when it received that acknowledgement.
    pub seen_at: Option<i64>,
    /// Market events the client has received on this connection.
    pub events_received: Option<u64>,
    /// The id of the last market event the client processed, to resume from after a reconnect.
    pub last_event_id: Option<String>,
}

/// Thresholds of reconnect advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvicePolicy {
    /// API Gateway closes a connection at this age (2 hours).
    pub max_age_ms: i64,
    /// Advise reconnecting this long before that cap.
    pub reconnect_before_cap_ms: i64,
    /// A round-trip time above this is poor.
    pub poor_rtt_ms: u32,
    /// A jitter above this is poor.
    pub poor_jitter_ms: u32,
    /// This many missed heartbeats in a row of the window make the connection poor.
    pub max_missed_heartbeats: u64,
}

impl Default for AdvicePolicy {
    fn default() -> Self {
        Self {
            max_age_ms: 2 * 3600 * 1000,
            reconnect_before_cap_ms: 5 * 60 * 1000,
            poor_rtt_ms: 2000,
            poor_jitter_ms: 500,
            max_missed_heartbeats: 3,
        }
    }
}

/// Why a client should reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconnectReason {
    /// The connection nears API Gateway's 2-hour limit.
    ConnectionAge,
    /// Round-trip time, jitter or lost heartbeats are poor.
    PoorQuality,
    /// The server side is draining (a rolling update).
    Draining,
    /// The session is now served elsewhere.
    SessionMoved,
}

impl ConnectionQuality {
    /// The quality after heartbeat `beat` arrived at `now`. `None` for a stale or repeated
    /// heartbeat (its counter is not above the latest), which changes nothing.
    pub fn after(&self, beat: &Heartbeat, now: Timestamp) -> Option<Self> {
        if beat.seq <= self.last_seq {
            return None;
        }
        let mut next = *self;
        next.heartbeats += 1;
        next.missed_heartbeats += beat.seq - self.last_seq - 1;
        next.last_seq = beat.seq;
        if let Some(received) = beat.events_received {
            next.events_received = received;
        }
        if let (Some(server_then), Some(seen_at)) = (beat.last_server_time, beat.seen_at) {
            let server_span = now.unix_millis() - server_then;
            let client_span = beat.client_time - seen_at;
            if server_span >= 0 && client_span >= 0 && server_span >= client_span {
                let rtt = u32::try_from(server_span - client_span).unwrap_or(u32::MAX);
                // From the third heartbeat on, the previous one measured a round trip too
                // (the first has no acknowledgement to echo).
                if self.heartbeats >= 2 {
                    // RFC 3550's interarrival jitter: J += (|D| - J) / 16.
                    let d = i64::from(rtt.abs_diff(self.rtt_ms));
                    let j = i64::from(self.jitter_ms);
                    next.jitter_ms = u32::try_from(j + (d - j) / 16).unwrap_or(u32::MAX);
                }
                next.rtt_ms = rtt;
            }
        }
        Some(next)
    }

    /// Whether the figures are poor under `policy`, given the misses of the latest heartbeat.
    pub fn is_poor(&self, policy: &AdvicePolicy, missed_now: u64) -> bool {
        self.rtt_ms > policy.poor_rtt_ms
            || self.jitter_ms > policy.poor_jitter_ms
            || missed_now >= policy.max_missed_heartbeats
    }
}

/// The advice for a connection opened at `connected_at`, at `now`: the most pressing reason
/// to reconnect, if any.
pub fn advice(
    policy: &AdvicePolicy,
    connected_at: Timestamp,
    now: Timestamp,
    quality_poor: bool,
    draining: bool,
    session_moved: bool,
) -> Option<ReconnectReason> {
    let age = now.unix_millis() - connected_at.unix_millis();
    if draining {
        Some(ReconnectReason::Draining)
    } else if session_moved {
        Some(ReconnectReason::SessionMoved)
    } else if age >= policy.max_age_ms - policy.reconnect_before_cap_ms {
        Some(ReconnectReason::ConnectionAge)
    } else if quality_poor {
        Some(ReconnectReason::PoorQuality)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(seq: u64, client_time: i64, last: Option<(i64, i64)>) -> Heartbeat {
        Heartbeat {
            seq,
            client_time,
            last_server_time: last.map(|l| l.0),
            seen_at: last.map(|l| l.1),
            events_received: None,
            last_event_id: None,
        }
    }

    #[test]
    fn rtt_is_the_server_span_minus_the_client_span_whatever_the_clock_offset() {
        // The client's clock is 1 h behind; the ack left the server at 10_000 and reached the
        // client 40 ms later; the client held it 5 s and its heartbeat took 60 ms.
        let offset = -3_600_000;
        let seen_at = 10_040 + offset;
        let client_time = seen_at + 5_000;
        let now = Timestamp::from_unix_millis(10_000 + 40 + 5_000 + 60);

        let first = ConnectionQuality {
            last_seq: 1,
            ..ConnectionQuality::default()
        };
        let q = first
            .after(&beat(2, client_time, Some((10_000, seen_at))), now)
            .unwrap();

        assert_eq!(q.rtt_ms, 100);
        assert_eq!(q.heartbeats, 1);
    }

    #[test]
    fn gaps_in_the_counter_are_missed_heartbeats_and_repeats_change_nothing() {
        let now = Timestamp::from_unix_millis(1_000);
        let q = ConnectionQuality::default()
            .after(&beat(1, 0, None), now)
            .unwrap();
        let q = q.after(&beat(4, 0, None), now).unwrap();

        assert_eq!(q.missed_heartbeats, 2);
        assert_eq!(q.heartbeats, 2);
        assert_eq!(q.last_seq, 4);
        assert_eq!(q.after(&beat(4, 0, None), now), None);
        assert_eq!(q.after(&beat(3, 0, None), now), None);
    }

    #[test]
    fn jitter_follows_rtt_changes_smoothed_over_sixteen() {
        let mut q = ConnectionQuality {
            rtt_ms: 100,
            heartbeats: 2,
            last_seq: 1,
            ..ConnectionQuality::default()
        };
        // The next round trip takes 260 ms: |D| = 160, J = 0 + 160/16 = 10.
        q = q
            .after(
                &beat(2, 5_000, Some((10_000, 0))),
                Timestamp::from_unix_millis(15_260),
            )
            .unwrap();

        assert_eq!(q.rtt_ms, 260);
        assert_eq!(q.jitter_ms, 10);
    }

    #[test]
    fn advice_names_the_most_pressing_reason() {
        let policy = AdvicePolicy::default();
        let start = Timestamp::from_unix_millis(0);
        let young = Timestamp::from_unix_millis(60_000);
        let old = Timestamp::from_unix_millis(policy.max_age_ms - policy.reconnect_before_cap_ms);

        assert_eq!(advice(&policy, start, young, false, false, false), None);
        assert_eq!(
            advice(&policy, start, young, true, false, false),
            Some(ReconnectReason::PoorQuality)
        );
        assert_eq!(
            advice(&policy, start, old, true, false, false),
            Some(ReconnectReason::ConnectionAge)
        );
        assert_eq!(
            advice(&policy, start, young, true, false, true),
            Some(ReconnectReason::SessionMoved)
        );
        assert_eq!(
            advice(&policy, start, old, true, true, true),
            Some(ReconnectReason::Draining)
        );
    }
}
