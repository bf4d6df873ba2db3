//! What clients receive: market events as JSON, framed as server-sent events.
//!
//! Every event is encoded once, when it arrives from the simulator, into the exact bytes every
//! client of the stream is sent; the WebSocket push reuses the JSON (`data`).
//!
//! ```text
//! id: 3-1042
//! event: delta
//! data: {"epoch":3,"seq":1042,"emit_ns":1764230400000000000,"symbol":"BTC-USD","bids":[["100.25","1.500"]],"asks":[]}
//! ```
//!
//! Prices and quantities are exact decimal strings (`"100.25"`), never floats, so a client's
//! rebuilt book compares exactly with the simulator's.

use std::fmt::Write as _;

use bytes::Bytes;
use schemars::JsonSchema;
use serde::Serialize;
use session_core::domain::{EventId, decimal};
use session_proto::simulator::v1::{MarketEvent, Side, SimulatorState, market_event};

use crate::book::{Books, SymbolBook};

/// The SSE `event:` type of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every book of the stream, as of the frame's id.
    Snapshot,
    /// Changed levels of one symbol.
    Delta,
    /// A trade.
    Trade,
    /// A lifecycle change of the simulator, or of the stream (degraded upstream).
    Status,
    /// The client's state is void: a snapshot follows.
    Reset,
    /// The client should reconnect (the streamer drains, or the client is too slow).
    Reconnect,
}

impl Kind {
    /// Every event type (docs/asyncapi.json has a message for each).
    pub const ALL: [Self; 6] = [
        Self::Snapshot,
        Self::Delta,
        Self::Trade,
        Self::Status,
        Self::Reset,
        Self::Reconnect,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Delta => "delta",
            Self::Trade => "trade",
            Self::Status => "status",
            Self::Reset => "reset",
            Self::Reconnect => "reconnect",
        }
    }
}

/// Why a client is sent a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotCause {
    /// The first state of a new client.
    Initial,
    /// The client fell behind: its backlog was replaced by this snapshot.
    Conflated,
    /// The client's state was void (new epoch, or a resume outside the window).
    Reset,
}

impl SnapshotCause {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Conflated => "conflated",
            Self::Reset => "reset",
        }
    }
}

/// One encoded event: its position (if sequenced), type, JSON and SSE frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The stream position, absent for out-of-band notices (`reset`, `reconnect`, degraded status).
    pub id: Option<EventId>,
    /// The event type.
    pub kind: Kind,
    /// The JSON payload.
    pub data: Bytes,
    /// `id:` (if any), `event:` and `data:` lines and the blank line that ends the event.
    pub sse: Bytes,
}

impl Frame {
    fn new(id: Option<EventId>, kind: Kind, data: Vec<u8>) -> Self {
        let mut sse = String::with_capacity(data.len() + 48);
        if let Some(id) = id {
            let _ = writeln!(sse, "id: {id}");
        }
        let _ = writeln!(sse, "event: {}", kind.as_str());
        sse.push_str("data: ");
        let mut sse = sse.into_bytes();
        // serde_json never emits a raw newline, so the payload is one `data:` line.
        sse.extend_from_slice(&data);
        sse.extend_from_slice(b"\n\n");
        Self {
            id,
            kind,
            data: Bytes::from(data),
            sse: Bytes::from(sse),
        }
    }
}

/// An SSE comment that keeps idle proxies from closing the connection.
pub const HEARTBEAT: &[u8] = b": hb\n\n";

/// The first bytes of every SSE response: how long `EventSource` waits before reconnecting.
pub fn retry_preamble(retry_ms: u64) -> Bytes {
    Bytes::from(format!("retry: {retry_ms}\n\n"))
}

// The payloads below are the `data:` of each event type; their JSON Schemas are the messages'
// payloads in docs/asyncapi.json.

/// The fields every sequenced event's data starts with: its position and the simulator's clock.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Header {
    /// The stream's epoch (changes whenever the stream restarts).
    pub epoch: u64,
    /// The event's sequence within the epoch (a snapshot's: that of the last event it reflects).
    pub seq: u64,
    /// When the simulator emitted the event (Unix nanoseconds), for end-to-end latency.
    pub emit_ns: i64,
}

/// A price level: `[price, quantity]` as exact decimal strings.
pub type Pair = [String; 2];

/// `delta`: changed levels of one symbol (a quantity of zero removes the level).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeltaData<'a> {
    /// Position and emit time.
    #[serde(flatten)]
    pub header: Header,
    /// The symbol whose book changed.
    pub symbol: &'a str,
    /// Changed bid levels.
    pub bids: Vec<Pair>,
    /// Changed ask levels.
    pub asks: Vec<Pair>,
}

/// `trade`: one trade.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TradeData<'a> {
    /// Position and emit time.
    #[serde(flatten)]
    pub header: Header,
    /// The symbol traded.
    pub symbol: &'a str,
    /// The simulator's trade id.
    pub trade_id: u64,
    /// Exact decimal price.
    pub price: String,
    /// Exact decimal quantity.
    pub quantity: String,
    /// The side that took liquidity.
    #[schemars(extend("enum" = ["buy", "sell", "unknown"]))]
    pub aggressor: &'static str,
}

/// `status` of the simulator: a lifecycle change, sequenced like market events.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusData<'a> {
    /// Position and emit time.
    #[serde(flatten)]
    pub header: Header,
    /// The simulator's new state.
    #[schemars(extend("enum" = ["starting", "running", "stopping", "stopped", "failed", "unknown"]))]
    pub state: &'static str,
    /// Why, in the simulator's words.
    pub reason: &'a str,
}

/// One symbol's book in a snapshot.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BookData<'a> {
    /// The symbol.
    pub symbol: &'a str,
    /// Decimal places of prices.
    pub price_scale: u32,
    /// Decimal places of quantities.
    pub quantity_scale: u32,
    /// Bids, best (highest) first.
    pub bids: Vec<Pair>,
    /// Asks, best (lowest) first.
    pub asks: Vec<Pair>,
}

/// `snapshot`: every book of the stream, as of the event's id.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SnapshotData<'a> {
    /// Position (of the last event reflected) and emit time.
    #[serde(flatten)]
    pub header: Header,
    /// Why the client is sent a snapshot.
    pub cause: SnapshotCause,
    /// The books (on WebSocket, a split snapshot's part holds some of them).
    pub books: Vec<BookData<'a>>,
    /// Only on WebSocket, in a snapshot split to fit API Gateway's message limit: this part's
    /// number, from 1 (set by the push, never on SSE).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub part: Option<u32>,
    /// With `part`: how many parts the snapshot has.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub parts: Option<u32>,
}

/// `reset`: the client's state is void; a snapshot follows.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ResetData<'a> {
    /// Why: `initial`, `epoch_changed`, `unknown_position`, `outside_window`, ….
    pub reason: &'a str,
    /// The position the client asked to resume from, if it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = EventId::PATTERN))]
    pub last_event_id: Option<String>,
}

/// `reconnect`: the client should reconnect (and resume) after `retry_ms`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReconnectData<'a> {
    /// Why: `draining` (the streamer shuts down) or `slow_consumer`.
    #[schemars(extend("enum" = ["draining", "slow_consumer"]))]
    pub reason: &'a str,
    /// How long to wait before reconnecting, in milliseconds.
    pub retry_ms: u64,
}

/// `status` of the stream itself (its upstream), out of band: no id, `stream: true`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StreamStatusData<'a> {
    /// The upstream's state.
    #[schemars(extend("enum" = ["live", "degraded", "ended"]))]
    pub state: &'a str,
    /// Why, in words.
    pub reason: &'a str,
    /// Always `true`: tells this notice from the simulator's own `status`.
    #[schemars(extend("const" = true))]
    pub stream: bool,
}

fn level(price: i64, quantity: i64, book: Option<&SymbolBook>) -> Pair {
    let (ps, qs) = book.map_or((0, 0), |b| (b.price_scale, b.quantity_scale));
    [decimal(price, ps), decimal(quantity, qs)]
}

fn json(value: &impl Serialize) -> Vec<u8> {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Encodes one simulator event, after it was applied to `books` (whose scales it uses).
/// Snapshots are not encoded here: clients get them from [`snapshot`], flagged for their cause.
pub fn event(event: &MarketEvent, books: &Books) -> Option<Frame> {
    let header = Header {
        epoch: event.epoch,
        seq: event.sequence,
        emit_ns: event.emit_time_unix_nanos,
    };
    let id = Some(EventId {
        epoch: event.epoch,
        sequence: event.sequence,
    });
    match event.kind.as_ref()? {
        market_event::Kind::Snapshot(_) => None,
        market_event::Kind::Update(update) => {
            let book = books.symbol(&update.symbol);
            let (mut bids, mut asks) = (Vec::new(), Vec::new());
            for l in &update.levels {
                match Side::try_from(l.side) {
                    Ok(Side::Bid) => bids.push(level(l.price, l.quantity, book)),
                    Ok(Side::Ask) => asks.push(level(l.price, l.quantity, book)),
                    _ => {}
                }
            }
            let delta = DeltaData {
                header,
                symbol: &update.symbol,
                bids,
                asks,
            };
            Some(Frame::new(id, Kind::Delta, json(&delta)))
        }
        market_event::Kind::Trade(trade) => {
            let [price, quantity] = level(trade.price, trade.quantity, books.symbol(&trade.symbol));
            let aggressor = match Side::try_from(trade.aggressor) {
                Ok(Side::Bid) => "buy",
                Ok(Side::Ask) => "sell",
                _ => "unknown",
            };
            let data = TradeData {
                header,
                symbol: &trade.symbol,
                trade_id: trade.trade_id,
                price,
                quantity,
                aggressor,
            };
            Some(Frame::new(id, Kind::Trade, json(&data)))
        }
        market_event::Kind::Status(status) => {
            let data = StatusData {
                header,
                state: state_name(status.state),
                reason: &status.reason,
            };
            Some(Frame::new(id, Kind::Status, json(&data)))
        }
    }
}

/// The wire name of a simulator state.
pub fn state_name(state: i32) -> &'static str {
    match SimulatorState::try_from(state) {
        Ok(SimulatorState::Starting) => "starting",
        Ok(SimulatorState::Running) => "running",
        Ok(SimulatorState::Stopping) => "stopping",
        Ok(SimulatorState::Stopped) => "stopped",
        Ok(SimulatorState::Failed) => "failed",
        _ => "unknown",
    }
}

/// A snapshot of `books` (which must hold one: `books.at` is set), flagged with its cause.
pub fn snapshot(books: &Books, emit_ns: i64, cause: SnapshotCause) -> Frame {
    let at = books.at.unwrap_or(EventId {
        epoch: 0,
        sequence: 0,
    });
    let side = |levels: &mut dyn Iterator<Item = (&i64, &i64)>, book: &SymbolBook| {
        levels
            .map(|(p, q)| level(*p, *q, Some(book)))
            .collect::<Vec<_>>()
    };
    let data = SnapshotData {
        header: Header {
            epoch: at.epoch,
            seq: at.sequence,
            emit_ns,
        },
        cause,
        books: books
            .symbols
            .iter()
            .map(|b| BookData {
                symbol: &b.symbol,
                price_scale: b.price_scale,
                quantity_scale: b.quantity_scale,
                bids: side(&mut b.bids.iter().rev(), b),
                asks: side(&mut b.asks.iter(), b),
            })
            .collect(),
        part: None,
        parts: None,
    };
    Frame::new(Some(at), Kind::Snapshot, json(&data))
}

/// An out-of-band `reset`: the client's state is void for `reason`; a snapshot follows.
pub fn reset(reason: &str, last_event_id: Option<EventId>) -> Frame {
    let data = ResetData {
        reason,
        last_event_id: last_event_id.map(|id| id.to_string()),
    };
    Frame::new(None, Kind::Reset, json(&data))
}

/// An out-of-band `reconnect` advice: reconnect after `retry_ms` for `reason`.
pub fn reconnect(reason: &str, retry_ms: u64) -> Frame {
    Frame::new(
        None,
        Kind::Reconnect,
        json(&ReconnectData { reason, retry_ms }),
    )
}

/// An out-of-band `status` of the stream itself (`degraded` upstream, `recovered`).
pub fn stream_status(state: &str, reason: &str) -> Frame {
    let data = StreamStatusData {
        state,
        reason,
        stream: true,
    };
    Frame::new(None, Kind::Status, json(&data))
}

#[cfg(test)]
mod tests {
    use session_proto::simulator::v1::{
        Book, BookSnapshot, BookUpdate, LevelUpdate, PriceLevel, Trade,
    };

    use super::*;

    fn books() -> Books {
        let mut books = Books::default();
        books.apply(
            3,
            10,
            &market_event::Kind::Snapshot(BookSnapshot {
                books: vec![Book {
                    symbol: "BTC-USD".into(),
                    price_scale: 2,
                    quantity_scale: 3,
                    bids: vec![
                        PriceLevel {
                            price: 10_025,
                            quantity: 1_500,
                        },
                        PriceLevel {
                            price: 10_000,
                            quantity: 1,
                        },
                    ],
                    asks: vec![PriceLevel {
                        price: 10_050,
                        quantity: 20,
                    }],
                }],
                reset: false,
            }),
        );
        books
    }

    fn text(frame: &Frame) -> &str {
        std::str::from_utf8(&frame.sse).unwrap()
    }

    #[test]
    fn deltas_are_sse_frames_with_exact_decimals() {
        let books = books();
        let event = MarketEvent {
            simulator_id: "sim".into(),
            epoch: 3,
            sequence: 11,
            emit_time_unix_nanos: 7,
            kind: Some(market_event::Kind::Update(BookUpdate {
                symbol: "BTC-USD".into(),
                levels: vec![LevelUpdate {
                    side: Side::Bid as i32,
                    price: 10_025,
                    quantity: 0,
                }],
            })),
        };
        let frame = super::event(&event, &books).unwrap();
        assert_eq!(
            text(&frame),
            "id: 3-11\nevent: delta\ndata: {\"epoch\":3,\"seq\":11,\"emit_ns\":7,\
             \"symbol\":\"BTC-USD\",\"bids\":[[\"100.25\",\"0.000\"]],\"asks\":[]}\n\n"
        );
    }

    #[test]
    fn trades_name_the_aggressor() {
        let event = MarketEvent {
            simulator_id: "sim".into(),
            epoch: 3,
            sequence: 12,
            emit_time_unix_nanos: 8,
            kind: Some(market_event::Kind::Trade(Trade {
                symbol: "BTC-USD".into(),
                trade_id: 5,
                price: 10_050,
                quantity: 20,
                aggressor: Side::Bid as i32,
            })),
        };
        let frame = super::event(&event, &books()).unwrap();
        assert!(text(&frame).contains(
            "\"trade_id\":5,\"price\":\"100.50\",\"quantity\":\"0.020\",\"aggressor\":\"buy\""
        ));
    }

    #[test]
    fn snapshots_list_best_levels_first_and_say_why() {
        let frame = snapshot(&books(), 9, SnapshotCause::Conflated);
        assert_eq!(
            text(&frame),
            "id: 3-10\nevent: snapshot\ndata: {\"epoch\":3,\"seq\":10,\"emit_ns\":9,\
             \"cause\":\"conflated\",\"books\":[{\"symbol\":\"BTC-USD\",\"price_scale\":2,\
             \"quantity_scale\":3,\"bids\":[[\"100.25\",\"1.500\"],[\"100.00\",\"0.001\"]],\
             \"asks\":[[\"100.50\",\"0.020\"]]}]}\n\n"
        );
    }

    #[test]
    fn notices_carry_no_id() {
        assert_eq!(
            text(&reset("epoch_changed", None)),
            "event: reset\ndata: {\"reason\":\"epoch_changed\"}\n\n"
        );
        assert!(text(&reconnect("draining", 500)).starts_with("event: reconnect\n"));
    }
}
