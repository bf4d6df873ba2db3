//! Heartbeats of a WebSocket connection: what a client reports, how the connection's quality
//! follows from it, and when the client is advised to reconnect.
//!
//! Round-trip time is measured without trusting either clock against the other: the client says
//! which server time it saw last (`last_server_time`, from the previous acknowledgement) and when
//! it saw it on its own clock (`seen_at`). The server's span since it stamped that
//! acknowledgement, minus the client's span since it received it, is the time the two messages
//! spent in flight: one round trip.
//!
//! The session's lease says which streamer serves the session ([`Affinity`]): a heartbeat
//! records its holder on the connection, and advises reconnecting when the holder is draining or
//! is no longer the one the previous heartbeat recorded.

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConnectionQuality, EventId, Lease, Timestamp, ValidationError};

/// The largest counter a heartbeat may carry: 2⁵³ − 1, the largest integer a browser's
/// JavaScript number holds exactly.
const MAX_HEARTBEAT_COUNT: u64 = (1 << 53) - 1;

/// The latest clock reading a heartbeat may carry (Unix ms): the last millisecond of 9999.
/// Readings are subtracted from the server's clock, so they must be far from `i64`'s ends.
const MAX_HEARTBEAT_TIME: i64 = 253_402_300_799_999;

/// The longest `last_event_id`: two 20-digit numbers and the dash.
const MAX_EVENT_ID_CHARS: usize = 41;

/// What a client sends with `{"action": "heartbeat", ...}`. Deserialising checks the types and
/// parses `last_event_id`; `Heartbeat::validate` checks the ranges.
///
/// Its JSON Schema (docs/asyncapi.json's `heartbeat` message) states the same ranges.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The client's heartbeat counter, 1 for the first; gaps count as missed heartbeats.
    #[schemars(range(min = 1, max = MAX_HEARTBEAT_COUNT))]
    pub seq: u64,
    /// The client's clock when it sent this, in Unix milliseconds.
    #[schemars(range(min = 0, max = MAX_HEARTBEAT_TIME))]
    pub client_time: i64,
    /// `server_time` of the last acknowledgement the client received, if any.
    #[schemars(range(min = 0, max = MAX_HEARTBEAT_TIME))]
    pub last_server_time: Option<i64>,
    /// The client's clock when it received that acknowledgement.
    #[schemars(range(min = 0, max = MAX_HEARTBEAT_TIME))]
    pub seen_at: Option<i64>,
    /// Market events the client has received on this connection.
    #[schemars(range(min = 0, max = MAX_HEARTBEAT_COUNT))]
    pub events_received: Option<u64>,
    /// The id of the last market event the client processed, to resume from after a reconnect.
    /// Parsed, so what is recorded is the service's own spelling, never the client's text.
    #[serde(default, deserialize_with = "event_id")]
    #[schemars(with = "Option<String>", length(max = MAX_EVENT_ID_CHARS), regex(pattern = EventId::PATTERN))]
    pub last_event_id: Option<EventId>,
}

impl Heartbeat {
    /// Checks every field's range: counters `1..=2⁵³−1` (`seq`) or `0..=2⁵³−1`, clock readings
    /// `0..=`[`MAX_HEARTBEAT_TIME`]. Errors name the field.
    ///
    /// # Errors
    /// The first field out of its range.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let count = |field: &str, value: u64, min: u64| {
            if (min..=MAX_HEARTBEAT_COUNT).contains(&value) {
                Ok(())
            } else {
                Err(ValidationError::new(
                    field,
                    format!("must be between {min} and {MAX_HEARTBEAT_COUNT}, got {value}"),
                ))
            }
        };
        let time = |field: &str, value: i64| {
            if (0..=MAX_HEARTBEAT_TIME).contains(&value) {
                Ok(())
            } else {
                Err(ValidationError::new(
                    field,
                    format!(
                        "must be a Unix time in milliseconds, 0 to {MAX_HEARTBEAT_TIME}, got {value}"
                    ),
                ))
            }
        };
        count("seq", self.seq, 1)?;
        time("client_time", self.client_time)?;
        if let Some(t) = self.last_server_time {
            time("last_server_time", t)?;
        }
        if let Some(t) = self.seen_at {
            time("seen_at", t)?;
        }
        if let Some(n) = self.events_received {
            count("events_received", n, 0)?;
        }
        Ok(())
    }
}

/// `last_event_id`: `null`, or a string of at most [`MAX_EVENT_ID_CHARS`] that parses as an
/// [`EventId`]. The error does not repeat an overlong value.
fn event_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<EventId>, D::Error> {
    use serde::de::Error as _;
    let Some(text) = Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if text.len() > MAX_EVENT_ID_CHARS {
        return Err(D::Error::custom(format!(
            "must be at most {MAX_EVENT_ID_CHARS} characters (`<epoch>-<sequence>`), got {}",
            text.len()
        )));
    }
    EventId::parse("last_event_id", &text)
        .map(Some)
        .map_err(|e| D::Error::custom(e.problem))
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

/// Which streamer serves a connection's session, as a heartbeat sees it in the session's lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Affinity {
    /// The streamer to record as serving the session: the lease's holder, else (nobody holds
    /// it, or it could not be read) the one recorded before.
    pub served_by: Option<String>,
    /// The holder is draining: the client should reconnect before it hands over.
    pub draining: bool,
    /// The holder is not the streamer the previous heartbeat recorded: the session moved.
    pub session_moved: bool,
}

impl Affinity {
    /// The affinity of a connection whose record names `recorded` as serving it, given the
    /// session's current (unexpired) `lease`, if any is held.
    ///
    /// No lease (between holders, or unreadable) changes nothing and advises nothing: the
    /// record keeps its streamer, so a move is noticed once the next holder appears.
    pub fn at_heartbeat(recorded: Option<&str>, lease: Option<&Lease>) -> Self {
        match lease {
            None => Self {
                served_by: recorded.map(str::to_owned),
                draining: false,
                session_moved: false,
            },
            Some(lease) => Self {
                served_by: Some(lease.owner.clone()),
                draining: lease.draining,
                // A first sighting (nothing recorded) is no move.
                session_moved: recorded.is_some_and(|r| r != lease.owner),
            },
        }
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

    /// The heartbeat of `json`, or the type error (which the handler prefixes with the
    /// field's path) or the range error (which names the field).
    fn parse(json: &str) -> Result<Heartbeat, String> {
        let beat: Heartbeat = serde_json::from_str(json).map_err(|e| e.to_string())?;
        beat.validate().map_err(|e| e.to_string())?;
        Ok(beat)
    }

    #[test]
    fn a_heartbeats_last_event_id_is_parsed_into_the_services_event_id() {
        let beat = parse(r#"{"seq": 2, "client_time": 5, "last_event_id": "17-4031"}"#).unwrap();

        assert_eq!(
            beat.last_event_id,
            Some(EventId {
                epoch: 17,
                sequence: 4031
            })
        );
    }

    #[test]
    fn a_heartbeat_with_a_malformed_or_overlong_last_event_id_is_refused_without_repeating_it() {
        let long = "1".repeat(100_000);
        for bad in ["abc", "1-", "-1-2", "1-2-3", "", long.as_str()] {
            let json = format!(r#"{{"seq": 2, "client_time": 5, "last_event_id": "{bad}"}}"#);

            let error = parse(&json).unwrap_err();

            assert!(
                error.contains("is not an event id") || error.contains("at most 41 characters"),
                "{bad:.50}: {error}"
            );
            assert!(
                error.len() < 200,
                "the error repeats the value: {error:.300}"
            );
        }
        assert!(parse(r#"{"seq": 2, "client_time": 5, "last_event_id": 17}"#).is_err());
    }

    #[test]
    fn a_heartbeats_numbers_outside_their_ranges_are_refused_naming_the_field() {
        let cases = [
            (r#"{"seq": 0, "client_time": 5}"#, "seq"),
            (r#"{"seq": -1, "client_time": 5}"#, "seq"),
            (r#"{"seq": 18446744073709551616, "client_time": 5}"#, "seq"),
            (r#"{"seq": 9007199254740992, "client_time": 5}"#, "seq"),
            (r#"{"seq": 1.5, "client_time": 5}"#, "seq"),
            (r#"{"seq": 1, "client_time": -5}"#, "client_time"),
            (
                r#"{"seq": 1, "client_time": 9223372036854775807}"#,
                "client_time",
            ),
            (
                r#"{"seq": 1, "client_time": 5, "last_server_time": -9223372036854775808, "seen_at": 4}"#,
                "last_server_time",
            ),
            (
                r#"{"seq": 1, "client_time": 5, "last_server_time": 3, "seen_at": -4}"#,
                "seen_at",
            ),
            (
                r#"{"seq": 1, "client_time": 5, "events_received": -1}"#,
                "events_received",
            ),
            (
                r#"{"seq": 1, "client_time": 5, "events_received": 9007199254740992}"#,
                "events_received",
            ),
        ];
        for (json, field) in cases {
            let error = parse(json).unwrap_err();

            // Type errors (negative into unsigned, overflow, fractions) come from serde, whose
            // path the handler adds; range errors name the field themselves.
            let typed = error.contains("invalid");
            assert!(
                typed || error.starts_with(&format!("{field}: ")),
                "{json}: {error}"
            );
        }
        assert!(
            parse(
                r#"{"seq": 9007199254740991, "client_time": 253402300799999, "events_received": 0}"#
            )
            .is_ok()
        );
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

    fn lease(owner: &str, draining: bool) -> Lease {
        Lease {
            name: "session/ses_01JDQ7Z8X9K3M4N5P6Q7R8S9T0".to_owned(),
            owner: owner.to_owned(),
            expires_at: Timestamp::from_unix_millis(60_000),
            token: 1,
            draining,
        }
    }

    #[test]
    fn a_first_sighting_of_the_holder_is_recorded_without_advice() {
        let affinity = Affinity::at_heartbeat(None, Some(&lease("streamer-a", false)));

        assert_eq!(
            affinity,
            Affinity {
                served_by: Some("streamer-a".to_owned()),
                draining: false,
                session_moved: false,
            }
        );
    }

    #[test]
    fn the_same_holder_as_recorded_advises_nothing() {
        let affinity =
            Affinity::at_heartbeat(Some("streamer-a"), Some(&lease("streamer-a", false)));

        assert_eq!(affinity.served_by.as_deref(), Some("streamer-a"));
        assert!(!affinity.draining);
        assert!(!affinity.session_moved);
    }

    #[test]
    fn a_draining_holder_advises_draining() {
        let affinity = Affinity::at_heartbeat(Some("streamer-a"), Some(&lease("streamer-a", true)));

        assert!(affinity.draining);
        assert!(!affinity.session_moved);
    }

    #[test]
    fn another_holder_than_recorded_is_a_move_and_becomes_the_recorded_one() {
        let moved = Affinity::at_heartbeat(Some("streamer-a"), Some(&lease("streamer-b", false)));
        let next = Affinity::at_heartbeat(
            moved.served_by.as_deref(),
            Some(&lease("streamer-b", false)),
        );

        assert!(moved.session_moved);
        assert_eq!(moved.served_by.as_deref(), Some("streamer-b"));
        assert!(!next.session_moved, "advised once");
    }

    #[test]
    fn without_a_held_lease_the_recorded_holder_stays_and_nothing_is_advised() {
        assert_eq!(
            Affinity::at_heartbeat(Some("streamer-a"), None),
            Affinity {
                served_by: Some("streamer-a".to_owned()),
                draining: false,
                session_moved: false,
            }
        );
        assert_eq!(Affinity::at_heartbeat(None, None), Affinity::default());
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
