//! A browser's copy of the books, rebuilt from what the stream sent, with every rule of the
//! stream checked: a gap, a duplicate or an event of another epoch without a reset panics.

use std::collections::BTreeMap;

use serde_json::Value;
use session_proto::simulator::v1 as pb;

use crate::sse::Event;

/// One symbol's book in scaled integers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    price_scale: u32,
    quantity_scale: u32,
    pub bids: BTreeMap<i64, i64>,
    pub asks: BTreeMap<i64, i64>,
}

/// The books, and where in the stream they are.
#[derive(Debug, Default)]
pub struct Replica {
    pub books: BTreeMap<String, Book>,
    pub epoch: Option<u64>,
    pub seq: u64,
    pub resets: usize,
    pub conflations: usize,
    pub events: usize,
    expect_snapshot: bool,
    pub last_status: Option<String>,
    /// Events dropped by [`Replica::apply_once`] as already held.
    pub duplicates: usize,
}

fn scaled(text: &str, scale: u32) -> i64 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert_eq!(
        fraction.len(),
        scale as usize,
        "{text} has {scale} decimals"
    );
    format!("{whole}{fraction}").parse().expect("a decimal")
}

fn levels(value: &Value, book: &Book) -> Vec<(i64, i64)> {
    value
        .as_array()
        .expect("levels")
        .iter()
        .map(|pair| {
            (
                scaled(pair[0].as_str().expect("a price"), book.price_scale),
                scaled(pair[1].as_str().expect("a quantity"), book.quantity_scale),
            )
        })
        .collect()
}

impl Replica {
    /// Applies one event; panics on any break of the stream's rules.
    pub fn apply(&mut self, event: &Event) {
        let data = &event.data;
        match event.event.as_str() {
            "reset" => {
                self.resets += 1;
                self.expect_snapshot = true;
                return;
            }
            "reconnect" => return,
            "status" if data["stream"] == Value::Bool(true) => return,
            _ => {}
        }
        let epoch = data["epoch"].as_u64().expect("an epoch");
        let seq = data["seq"].as_u64().expect("a seq");
        assert_eq!(
            event.id.as_deref(),
            Some(format!("{epoch}-{seq}").as_str()),
            "the id is the position"
        );
        if event.event == "snapshot" {
            let cause = data["cause"].as_str().expect("a cause");
            match cause {
                "initial" => assert!(self.epoch.is_none(), "an initial snapshot mid-stream"),
                "reset" => assert!(self.expect_snapshot, "a reset snapshot without a reset"),
                "conflated" => self.conflations += 1,
                other => panic!("unknown snapshot cause {other}"),
            }
            self.expect_snapshot = false;
            self.books.clear();
            for book in data["books"].as_array().expect("books") {
                let mut b = Book {
                    price_scale: book["price_scale"].as_u64().expect("a price scale") as u32,
                    quantity_scale: book["quantity_scale"].as_u64().expect("a quantity scale")
                        as u32,
                    ..Book::default()
                };
                b.bids = levels(&book["bids"], &b).into_iter().collect();
                b.asks = levels(&book["asks"], &b).into_iter().collect();
                self.books
                    .insert(book["symbol"].as_str().expect("a symbol").to_owned(), b);
            }
            self.epoch = Some(epoch);
            self.seq = seq;
            return;
        }
        assert!(
            !self.expect_snapshot,
            "an event between a reset and its snapshot"
        );
        assert_eq!(
            self.epoch,
            Some(epoch),
            "an event of another epoch without a reset"
        );
        assert_eq!(
            seq,
            self.seq + 1,
            "a gap or a duplicate: {seq} after {}",
            self.seq
        );
        self.seq = seq;
        self.events += 1;
        match event.event.as_str() {
            "delta" => {
                let book = self
                    .books
                    .get_mut(data["symbol"].as_str().expect("a symbol"))
                    .expect("a known symbol");
                let (bids, asks) = (levels(&data["bids"], book), levels(&data["asks"], book));
                for (side, changes) in [(&mut book.bids, bids), (&mut book.asks, asks)] {
                    for (price, quantity) in changes {
                        if quantity == 0 {
                            side.remove(&price);
                        } else {
                            side.insert(price, quantity);
                        }
                    }
                }
            }
            "status" => self.last_status = data["state"].as_str().map(str::to_owned),
            "trade" => {}
            other => panic!("unknown event type {other}"),
        }
    }

    /// Applies `event` unless it is one the replica already holds (an update of this epoch at
    /// or before its position), as a WebSocket client must: a streamer that takes a session
    /// over starts from the last position the client reported, which may be behind it.
    pub fn apply_once(&mut self, event: &Event) {
        let data = &event.data;
        let held = event.event != "snapshot"
            && event.id.is_some()
            && data["epoch"].as_u64() == self.epoch
            && data["seq"].as_u64().is_some_and(|seq| seq <= self.seq);
        if held {
            self.duplicates += 1;
        } else {
            self.apply(event);
        }
    }

    /// The last event id this replica holds.
    pub fn position(&self) -> Option<String> {
        self.epoch.map(|e| format!("{e}-{}", self.seq))
    }

    /// Asserts the replica's book of `symbol` is exactly the authoritative one.
    pub fn assert_matches(&self, symbol: &str, authoritative: &pb::GetBookResponse) {
        assert_eq!(self.epoch, Some(authoritative.epoch), "{symbol}: epoch");
        assert_eq!(self.seq, authoritative.sequence, "{symbol}: sequence");
        let book = authoritative.book.as_ref().expect("a book");
        let mine = &self.books[symbol];
        let side = |levels: &[pb::PriceLevel]| -> BTreeMap<i64, i64> {
            levels.iter().map(|l| (l.price, l.quantity)).collect()
        };
        assert_eq!(mine.bids, side(&book.bids), "{symbol}: bids");
        assert_eq!(mine.asks, side(&book.asks), "{symbol}: asks");
    }
}
