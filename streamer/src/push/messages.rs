//! What a WebSocket client is sent: the hub's events, several to a message.
//!
//! The hub hands every client the same SSE bytes; a WebSocket connection gets those events
//! as JSON messages instead, packed in order into as few `PostToConnection` calls as API
//! Gateway's limits allow:
//!
//! ```text
//! {"type":"events","events":[{"id":"3-1042","event":"delta","data":{...}},{"event":"reset","data":{...}}]}
//! ```
//!
//! `data` is the SSE event's JSON as it is (encoded once, by the hub); out-of-band events carry
//! no `id`, as on SSE. Heartbeat comments are dropped: WebSocket clients heartbeat themselves.

use bytes::{BufMut as _, Bytes, BytesMut};

use super::MAX_MESSAGE_BYTES;

const HEAD: &[u8] = br#"{"type":"events","events":["#;
const TAIL: &[u8] = b"]}";

/// An event too large for any message (it cannot be sent over API Gateway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event of {bytes} bytes exceeds API Gateway's {MAX_MESSAGE_BYTES}-byte message limit")]
pub struct Oversize {
    /// The event's size as a message.
    pub bytes: usize,
}

/// Packs the events of `sse` (whole SSE frames) into messages of at most `budget` bytes each,
/// in order; an event larger than `budget` travels alone, in a message of up to
/// [`MAX_MESSAGE_BYTES`]. Returns the messages and how many events they hold.
///
/// # Errors
/// An event does not fit even [`MAX_MESSAGE_BYTES`]; nothing is returned then, since sending
/// the rest would open a gap.
pub fn pack(sse: &[u8], budget: usize) -> Result<(Vec<Bytes>, usize), Oversize> {
    let mut messages = Vec::new();
    let mut current = BytesMut::new();
    let mut events = 0;
    for frame in sse
        .split(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .split(|line| line.is_empty())
    {
        let Some(event) = event_json(frame) else {
            continue;
        };
        events += 1;
        let alone = HEAD.len() + event.len() + TAIL.len();
        if alone > MAX_MESSAGE_BYTES {
            return Err(Oversize { bytes: alone });
        }
        let needed = if current.is_empty() {
            alone
        } else {
            current.len() + 1 + event.len() + TAIL.len()
        };
        if !current.is_empty() && needed > budget {
            current.put_slice(TAIL);
            messages.push(std::mem::take(&mut current).freeze());
        }
        if current.is_empty() {
            current.reserve(budget.max(alone));
            current.put_slice(HEAD);
        } else {
            current.put_u8(b',');
        }
        current.put_slice(&event);
    }
    if !current.is_empty() {
        current.put_slice(TAIL);
        messages.push(current.freeze());
    }
    Ok((messages, events))
}

/// One SSE frame's lines as an event object; `None` for a frame without data (a comment, a
/// `retry:`).
fn event_json(lines: &[&[u8]]) -> Option<Vec<u8>> {
    let field = |name: &[u8]| lines.iter().find_map(|line| line.strip_prefix(name));
    let (id, event, data) = (field(b"id: "), field(b"event: "), field(b"data: "));
    let data = data?;
    // Ids (`<epoch>-<seq>`) and event names are plain ASCII words: no escaping needed.
    let mut out = Vec::with_capacity(data.len() + 48);
    out.push(b'{');
    if let Some(id) = id {
        out.extend_from_slice(b"\"id\":\"");
        out.extend_from_slice(id);
        out.extend_from_slice(b"\",");
    }
    out.extend_from_slice(b"\"event\":\"");
    out.extend_from_slice(event.unwrap_or(b"message"));
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::push::MAX_FRAME_BYTES;

    fn frame(id: Option<&str>, event: &str, data: &str) -> String {
        let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
        format!("{id}event: {event}\ndata: {data}\n\n")
    }

    fn events_of(messages: &[Bytes]) -> Vec<Value> {
        messages
            .iter()
            .flat_map(|m| {
                let message: Value = serde_json::from_slice(m).unwrap();
                assert_eq!(message["type"], "events");
                message["events"].as_array().unwrap().clone()
            })
            .collect()
    }

    #[test]
    fn events_become_json_objects_in_order_and_comments_are_dropped() {
        let sse = format!(
            "retry: 1000\n\n{}: hb\n\n{}",
            frame(Some("3-7"), "delta", r#"{"seq":7}"#),
            frame(None, "reset", r#"{"reason":"epoch_changed"}"#)
        );

        let (messages, count) = pack(sse.as_bytes(), MAX_FRAME_BYTES).unwrap();

        assert_eq!(count, 2);
        assert_eq!(messages.len(), 1);
        assert_eq!(
            std::str::from_utf8(&messages[0]).unwrap(),
            r#"{"type":"events","events":[{"id":"3-7","event":"delta","data":{"seq":7}},{"event":"reset","data":{"reason":"epoch_changed"}}]}"#
        );
    }

    #[test]
    fn messages_stay_within_the_budget_and_keep_every_event_in_order() {
        let sse: String = (0..2_000)
            .map(|i| {
                frame(
                    Some(&format!("1-{i}")),
                    "trade",
                    &format!(r#"{{"seq":{i},"pad":"{}"}}"#, "x".repeat(i % 90)),
                )
            })
            .collect();

        let (messages, count) = pack(sse.as_bytes(), MAX_FRAME_BYTES).unwrap();

        assert_eq!(count, 2_000);
        assert!(messages.len() > 1);
        assert!(messages.iter().all(|m| m.len() <= MAX_FRAME_BYTES));
        let seqs: Vec<u64> = events_of(&messages)
            .iter()
            .map(|e| e["data"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..2_000).collect::<Vec<_>>());
    }

    #[test]
    fn an_event_larger_than_the_budget_travels_alone_and_one_beyond_the_message_limit_is_refused() {
        let big = format!(r#"{{"books":"{}"}}"#, "x".repeat(40_000));
        let sse = format!(
            "{}{}{}",
            frame(Some("1-1"), "delta", "{}"),
            frame(Some("1-1"), "snapshot", &big),
            frame(Some("1-2"), "delta", "{}")
        );
        let huge = frame(
            Some("1-3"),
            "snapshot",
            &format!(r#""{}""#, "x".repeat(MAX_MESSAGE_BYTES)),
        );

        let (messages, count) = pack(sse.as_bytes(), MAX_FRAME_BYTES).unwrap();
        let refused = pack(huge.as_bytes(), MAX_FRAME_BYTES).unwrap_err();

        assert_eq!(count, 3);
        assert_eq!(messages.len(), 3, "small, big alone, small");
        assert!(messages[1].len() > MAX_FRAME_BYTES && messages[1].len() <= MAX_MESSAGE_BYTES);
        assert!(refused.bytes > MAX_MESSAGE_BYTES);
    }
}
