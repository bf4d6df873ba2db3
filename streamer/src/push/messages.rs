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
//!
//! A `snapshot` larger than API Gateway's message limit (many symbols, deep books) is split by
//! books into several `snapshot` events, sent in consecutive messages with nothing between
//! them. Each part has the snapshot's `id` and header fields, some of its books in order, and
//! `"part": k, "parts": n` (k from 1):
//!
//! ```text
//! {"id":"3-1042","event":"snapshot","data":{"cause":"initial",...,"part":1,"parts":3,"books":[...]}}
//! ```
//!
//! A client applies a split snapshot once it has all `n` parts (their books together are the
//! snapshot's), and takes its id as its position only then; parts of a connection that ended
//! before the last one are dropped. A snapshot that fits is sent as it is, without `part`.

use std::ops::Range;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::Value;

use super::connections_api::MAX_MESSAGE_BYTES;

const HEAD: &[u8] = br#"{"type":"events","events":["#;
const TAIL: &[u8] = b"]}";

/// An event too large for any message (it cannot be sent over API Gateway): an event other
/// than a snapshot, or a snapshot with a book that alone exceeds the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event of {bytes} bytes exceeds API Gateway's {MAX_MESSAGE_BYTES}-byte message limit")]
pub struct Oversize {
    /// The event's size as a message (for a snapshot, that of the part with the book).
    pub bytes: usize,
}

/// Packs the events of `sse` (whole SSE frames) into messages of at most `budget` bytes each,
/// in order; an event larger than `budget` travels alone, in a message of up to
/// [`MAX_MESSAGE_BYTES`], and a snapshot larger than that is split into parts that fit (see
/// the module doc). Returns the messages and how many of the hub's events they hold (a split
/// snapshot counts once).
///
/// # Errors
/// An event does not fit even [`MAX_MESSAGE_BYTES`], and is not a snapshot that can be split
/// to fit; nothing is returned then, since sending the rest would open a gap.
pub fn pack(sse: &[u8], budget: usize) -> Result<(Vec<Bytes>, usize), Oversize> {
    let mut packer = Packer {
        budget,
        messages: Vec::new(),
        current: BytesMut::new(),
    };
    let mut events = 0;
    for frame in sse
        .split(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .split(|line| line.is_empty())
    {
        let Some(event) = Event::parse(frame) else {
            continue;
        };
        events += 1;
        let json = event.json(event.data);
        let alone = HEAD.len() + json.len() + TAIL.len();
        if alone <= MAX_MESSAGE_BYTES {
            packer.add(&json);
        } else if event.name == b"snapshot" {
            for part in split_snapshot(&event, alone)? {
                packer.add(&part);
            }
        } else {
            return Err(Oversize { bytes: alone });
        }
    }
    Ok((packer.finish(), events))
}

/// Messages filled in order, each up to `budget` bytes unless one event alone is larger.
struct Packer {
    budget: usize,
    messages: Vec<Bytes>,
    current: BytesMut,
}

impl Packer {
    fn add(&mut self, event: &[u8]) {
        let alone = HEAD.len() + event.len() + TAIL.len();
        let needed = if self.current.is_empty() {
            alone
        } else {
            self.current.len() + 1 + event.len() + TAIL.len()
        };
        if !self.current.is_empty() && needed > self.budget {
            self.current.put_slice(TAIL);
            self.messages
                .push(std::mem::take(&mut self.current).freeze());
        }
        if self.current.is_empty() {
            self.current.reserve(self.budget.max(alone));
            self.current.put_slice(HEAD);
        } else {
            self.current.put_u8(b',');
        }
        self.current.put_slice(event);
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.current.put_slice(TAIL);
            self.messages.push(self.current.freeze());
        }
        self.messages
    }
}

/// One SSE frame's fields.
struct Event<'a> {
    id: Option<&'a [u8]>,
    name: &'a [u8],
    data: &'a [u8],
}

impl<'a> Event<'a> {
    /// `None` for a frame without data (a comment, a `retry:`).
    fn parse(lines: &[&'a [u8]]) -> Option<Self> {
        let field = |name: &[u8]| lines.iter().find_map(|line| line.strip_prefix(name));
        Some(Self {
            id: field(b"id: "),
            name: field(b"event: ").unwrap_or(b"message"),
            data: field(b"data: ")?,
        })
    }

    /// The event as an object of a message, with `data` (the frame's, or a part's).
    fn json(&self, data: &[u8]) -> Vec<u8> {
        // Ids (`<epoch>-<seq>`) and event names are plain ASCII words: no escaping needed.
        let mut out = Vec::with_capacity(data.len() + 48);
        out.push(b'{');
        if let Some(id) = self.id {
            out.extend_from_slice(b"\"id\":\"");
            out.extend_from_slice(id);
            out.extend_from_slice(b"\",");
        }
        out.extend_from_slice(b"\"event\":\"");
        out.extend_from_slice(self.name);
        out.extend_from_slice(b"\",\"data\":");
        out.extend_from_slice(data);
        out.push(b'}');
        out
    }
}

/// Splits a snapshot of `bytes` as a message into parts that each fit one, by books, in order.
/// Only this rare path parses the JSON; header keys come out sorted (`serde_json`'s `Map`).
fn split_snapshot(event: &Event, bytes: usize) -> Result<Vec<Vec<u8>>, Oversize> {
    let Ok(Value::Object(mut header)) = serde_json::from_slice(event.data) else {
        return Err(Oversize { bytes });
    };
    let Some(Value::Array(books)) = header.remove("books") else {
        return Err(Oversize { bytes });
    };
    // Re-encoding values just parsed cannot fail.
    let books: Vec<Vec<u8>> = books
        .iter()
        .map(|book| serde_json::to_vec(book).unwrap_or_default())
        .collect();
    // `{<header>,` : the data of every part starts so.
    let mut head = serde_json::to_vec(&header).unwrap_or_default();
    head.pop();
    if head.len() > 1 {
        head.push(b',');
    }
    // A part without books, its `part` and `parts` as wide as they can be (a book per part), so
    // the parts are sized before their count is known.
    let width = books.len().to_string().len();
    let empty = HEAD.len()
        + event.json(&head).len()
        + br#""part":,"parts":,"books":[]}"#.len()
        + 2 * width
        + TAIL.len();
    let mut groups: Vec<Range<usize>> = Vec::new();
    let (mut start, mut size) = (0, empty);
    for (i, book) in books.iter().enumerate() {
        if empty + book.len() > MAX_MESSAGE_BYTES {
            return Err(Oversize {
                bytes: empty + book.len(),
            });
        }
        if i > start && size + 1 + book.len() > MAX_MESSAGE_BYTES {
            groups.push(start..i);
            (start, size) = (i, empty);
        }
        size += usize::from(i > start) + book.len();
    }
    if size > MAX_MESSAGE_BYTES {
        return Err(Oversize { bytes: size });
    }
    groups.push(start..books.len());
    let parts = groups.len();
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(k, range)| {
            let mut data = head.clone();
            data.extend_from_slice(
                format!("\"part\":{},\"parts\":{parts},\"books\":[", k + 1).as_bytes(),
            );
            data.extend_from_slice(&books[range].join(&b","[..]));
            data.extend_from_slice(b"]}");
            event.json(&data)
        })
        .collect())
}

#[cfg(test)]
mod tests {
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

    /// A snapshot's data: `books` books of `levels` levels a side.
    fn snapshot_data(books: usize, levels: usize) -> Value {
        let side = |from: usize| -> Vec<[String; 2]> {
            (from..from + levels)
                .map(|p| [format!("{p}.25"), "1.500".to_owned()])
                .collect()
        };
        let books: Vec<Value> = (0..books)
            .map(|i| {
                serde_json::json!({
                    "symbol": format!("SYM-{i}"), "price_scale": 2, "quantity_scale": 3,
                    "bids": side(100), "asks": side(100 + levels),
                })
            })
            .collect();
        serde_json::json!({"epoch": 1, "seq": 9, "emit_ns": 5, "cause": "initial", "books": books})
    }

    /// The fewest books of `levels` levels whose snapshot is over the message limit.
    fn just_over_the_limit(levels: usize) -> usize {
        (1..1_000)
            .find(|&n| snapshot_data(n, levels).to_string().len() > MAX_MESSAGE_BYTES)
            .unwrap()
    }

    #[test]
    fn an_oversize_snapshot_is_split_by_books_into_parts_that_each_fit_a_message() {
        let cases = [
            ("just over the limit", just_over_the_limit(20), 20),
            ("several times the limit", 1_000, 20),
            ("one deep book a part", 4, 2_000),
        ];
        for (case, books, levels) in cases {
            let snapshot = snapshot_data(books, levels);
            let sse = format!(
                "{}{}{}",
                frame(Some("1-8"), "delta", r#"{"seq":8}"#),
                frame(Some("1-9"), "snapshot", &snapshot.to_string()),
                frame(Some("1-10"), "delta", r#"{"seq":10}"#)
            );

            let (messages, count) = pack(sse.as_bytes(), MAX_FRAME_BYTES).unwrap();

            let events = events_of(&messages);
            let (first, parts, last) = (
                &events[0],
                &events[1..events.len() - 1],
                &events[events.len() - 1],
            );
            assert_eq!(count, 3, "{case}");
            assert!(
                messages.iter().all(|m| m.len() <= MAX_MESSAGE_BYTES),
                "{case}"
            );
            assert_eq!(
                (&first["id"], &last["id"]),
                (&"1-8".into(), &"1-10".into()),
                "{case}"
            );
            assert!(parts.len() > 1, "{case}: {} parts", parts.len());
            let mut books = Vec::new();
            for (k, part) in parts.iter().enumerate() {
                assert_eq!(
                    (&part["id"], &part["event"]),
                    (&"1-9".into(), &"snapshot".into()),
                    "{case}"
                );
                let mut data = part["data"].as_object().unwrap().clone();
                assert_eq!(data.remove("part"), Some((k + 1).into()), "{case}");
                assert_eq!(data.remove("parts"), Some(parts.len().into()), "{case}");
                books.extend(data.remove("books").unwrap().as_array().unwrap().clone());
                let mut header = snapshot.as_object().unwrap().clone();
                header.remove("books");
                assert_eq!(data, header, "{case}: part {}", k + 1);
            }
            assert_eq!(Value::from(books), snapshot["books"], "{case}");
        }
    }

    #[test]
    fn an_event_that_cannot_be_split_to_fit_a_message_is_refused() {
        let deep = snapshot_data(1, 4_000).to_string();
        let deep_among_small = {
            let mut data = snapshot_data(3, 5);
            data["books"][1] = snapshot_data(1, 4_000)["books"][0].clone();
            data.to_string()
        };
        let long_delta = format!(r#"{{"seq":1,"pad":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        let cases = [
            ("a snapshot of one book over the limit", "snapshot", deep),
            (
                "a snapshot with one book over the limit",
                "snapshot",
                deep_among_small,
            ),
            ("an event other than a snapshot", "delta", long_delta),
        ];
        for (case, event, data) in cases {
            let sse = format!(
                "{}{}",
                frame(Some("1-1"), "delta", "{}"),
                frame(Some("1-2"), event, &data)
            );

            let refused = pack(sse.as_bytes(), MAX_FRAME_BYTES).unwrap_err();

            assert!(refused.bytes > MAX_MESSAGE_BYTES, "{case}: {refused:?}");
        }
    }

    #[test]
    fn snapshots_that_fit_a_message_are_sent_as_they_are() {
        let cases = [
            ("small", snapshot_data(2, 3).to_string()),
            ("over the budget", snapshot_data(100, 20).to_string()),
        ];
        for (case, data) in cases {
            let sse = frame(Some("1-9"), "snapshot", &data);

            let (messages, _) = pack(sse.as_bytes(), MAX_FRAME_BYTES).unwrap();

            let expected = format!(
                r#"{{"type":"events","events":[{{"id":"1-9","event":"snapshot","data":{data}}}]}}"#
            );
            assert!(expected.len() <= MAX_MESSAGE_BYTES, "{case}");
            assert_eq!(messages, [Bytes::from(expected)], "{case}");
        }
    }
}
