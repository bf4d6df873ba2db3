//! A market-data client's copy of an instance's books, rebuilt from a snapshot and the events
//! after it, with every rule of the stream checked on the way.
//!
//! Tests (here and in other crates) feed it every event they receive and compare its books
//! with `GetBook`: an event of another epoch without a snapshot, a gap or a duplicate is an
//! error, never silently absorbed.

use std::collections::BTreeMap;

use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::market_event::Kind;

use super::book::{Book, LevelChange, Side};

/// An event that breaks the stream's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// An update, trade or status before any snapshot.
    #[error("event {sequence} came before any snapshot")]
    NoSnapshot {
        /// Its sequence.
        sequence: u64,
    },
    /// An event of another epoch that is not a snapshot.
    #[error("event of epoch {got} while holding epoch {held}, without a snapshot")]
    EpochChanged {
        /// The epoch held.
        held: u64,
        /// The event's epoch.
        got: u64,
    },
    /// An event that skips sequences.
    #[error("gap: expected sequence {expected}, got {got}")]
    Gap {
        /// The next sequence.
        expected: u64,
        /// The event's sequence.
        got: u64,
    },
    /// An event already applied.
    #[error("duplicate: sequence {got} is at or before {held}")]
    Duplicate {
        /// The last sequence applied.
        held: u64,
        /// The event's sequence.
        got: u64,
    },
    /// An update or trade of a symbol the snapshot did not have.
    #[error("unknown symbol {0:?}")]
    UnknownSymbol(String),
    /// A level update with a side that is neither bid nor ask, or a negative quantity.
    #[error("invalid level update: {0}")]
    InvalidLevel(String),
    /// An event with no kind.
    #[error("event {sequence} has no kind")]
    Empty {
        /// Its sequence.
        sequence: u64,
    },
}

/// One symbol's book and its scales.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SymbolBook {
    price_scale: u32,
    quantity_scale: u32,
    book: Book,
}

/// The books a subscriber holds, and where in the stream it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replica {
    /// `(epoch, sequence)` of the last event applied; `None` before the first snapshot.
    position: Option<(u64, u64)>,
    books: BTreeMap<String, SymbolBook>,
    /// Snapshots flagged `reset` applied so far.
    resets: u64,
    /// Snapshots applied so far.
    snapshots: u64,
}

impl Replica {
    /// A replica that holds nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event: a snapshot replaces everything; any other event must have the held
    /// epoch and the next sequence.
    ///
    /// # Errors
    /// The event breaks a rule of the stream; the replica is unchanged.
    pub fn apply(&mut self, event: &pb::MarketEvent) -> Result<(), ReplicaError> {
        let kind = event.kind.as_ref().ok_or(ReplicaError::Empty {
            sequence: event.sequence,
        })?;
        if let Kind::Snapshot(snapshot) = kind {
            self.books = snapshot
                .books
                .iter()
                .map(|book| (book.symbol.clone(), from_proto(book)))
                .collect();
            self.position = Some((event.epoch, event.sequence));
            self.snapshots += 1;
            self.resets += u64::from(snapshot.reset);
            return Ok(());
        }
        let Some((epoch, sequence)) = self.position else {
            return Err(ReplicaError::NoSnapshot {
                sequence: event.sequence,
            });
        };
        if event.epoch != epoch {
            return Err(ReplicaError::EpochChanged {
                held: epoch,
                got: event.epoch,
            });
        }
        if event.sequence <= sequence {
            return Err(ReplicaError::Duplicate {
                held: sequence,
                got: event.sequence,
            });
        }
        if event.sequence != sequence + 1 {
            return Err(ReplicaError::Gap {
                expected: sequence + 1,
                got: event.sequence,
            });
        }
        match kind {
            Kind::Update(update) => {
                let changes = update
                    .levels
                    .iter()
                    .map(level_change)
                    .collect::<Result<Vec<_>, _>>()?;
                let book = self
                    .books
                    .get_mut(&update.symbol)
                    .ok_or_else(|| ReplicaError::UnknownSymbol(update.symbol.clone()))?;
                for change in changes {
                    book.book.apply(change);
                }
            }
            Kind::Trade(trade) if !self.books.contains_key(&trade.symbol) => {
                return Err(ReplicaError::UnknownSymbol(trade.symbol.clone()));
            }
            Kind::Trade(_) | Kind::Status(_) | Kind::Snapshot(_) => {}
        }
        self.position = Some((epoch, event.sequence));
        Ok(())
    }

    /// Where to resume from: the last event applied.
    pub fn position(&self) -> Option<pb::StreamPosition> {
        self.position
            .map(|(epoch, sequence)| pb::StreamPosition { epoch, sequence })
    }

    /// The epoch held.
    pub fn epoch(&self) -> Option<u64> {
        self.position.map(|(epoch, _)| epoch)
    }

    /// The sequence of the last event applied.
    pub fn sequence(&self) -> Option<u64> {
        self.position.map(|(_, sequence)| sequence)
    }

    /// How many snapshots were applied, and how many of them were flagged `reset`.
    pub fn snapshot_counts(&self) -> (u64, u64) {
        (self.snapshots, self.resets)
    }

    /// The book of `symbol` in wire form, as `GetBook` with depth 0 returns it.
    pub fn book(&self, symbol: &str) -> Option<pb::Book> {
        let held = self.books.get(symbol)?;
        let levels = |side| {
            held.book
                .levels(side)
                .map(|(price, quantity)| pb::PriceLevel { price, quantity })
                .collect()
        };
        Some(pb::Book {
            symbol: symbol.to_owned(),
            price_scale: held.price_scale,
            quantity_scale: held.quantity_scale,
            bids: levels(Side::Bid),
            asks: levels(Side::Ask),
        })
    }

    /// The book of `symbol` as a [`Book`], e.g. to check its invariants.
    pub fn raw_book(&self, symbol: &str) -> Option<&Book> {
        self.books.get(symbol).map(|held| &held.book)
    }
}

fn from_proto(book: &pb::Book) -> SymbolBook {
    let mut rebuilt = Book::new();
    for (side, levels) in [(Side::Bid, &book.bids), (Side::Ask, &book.asks)] {
        for level in levels {
            rebuilt.apply(LevelChange {
                side,
                price: level.price,
                quantity: level.quantity,
            });
        }
    }
    SymbolBook {
        price_scale: book.price_scale,
        quantity_scale: book.quantity_scale,
        book: rebuilt,
    }
}

fn level_change(level: &pb::LevelUpdate) -> Result<LevelChange, ReplicaError> {
    let side = match pb::Side::try_from(level.side) {
        Ok(pb::Side::Bid) => Side::Bid,
        Ok(pb::Side::Ask) => Side::Ask,
        _ => {
            return Err(ReplicaError::InvalidLevel(format!(
                "side {} at price {}",
                level.side, level.price
            )));
        }
    };
    if level.quantity < 0 {
        return Err(ReplicaError::InvalidLevel(format!(
            "quantity {} at price {}",
            level.quantity, level.price
        )));
    }
    Ok(LevelChange {
        side,
        price: level.price,
        quantity: level.quantity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(epoch: u64, sequence: u64) -> pb::MarketEvent {
        pb::MarketEvent {
            simulator_id: "sim".into(),
            epoch,
            sequence,
            emit_time_unix_nanos: 0,
            kind: Some(Kind::Snapshot(pb::BookSnapshot {
                books: vec![pb::Book {
                    symbol: "BTC-USD".into(),
                    price_scale: 2,
                    quantity_scale: 4,
                    bids: vec![pb::PriceLevel {
                        price: 99,
                        quantity: 5,
                    }],
                    asks: vec![pb::PriceLevel {
                        price: 101,
                        quantity: 5,
                    }],
                }],
                reset: false,
            })),
        }
    }

    fn update(epoch: u64, sequence: u64, price: i64, quantity: i64) -> pb::MarketEvent {
        pb::MarketEvent {
            simulator_id: "sim".into(),
            epoch,
            sequence,
            emit_time_unix_nanos: 0,
            kind: Some(Kind::Update(pb::BookUpdate {
                symbol: "BTC-USD".into(),
                levels: vec![pb::LevelUpdate {
                    side: pb::Side::Bid.into(),
                    price,
                    quantity,
                }],
            })),
        }
    }

    #[test]
    fn updates_after_a_snapshot_change_the_book() {
        let mut replica = Replica::new();
        replica.apply(&snapshot(1, 10)).unwrap();
        replica.apply(&update(1, 11, 98, 3)).unwrap();
        replica.apply(&update(1, 12, 99, 0)).unwrap();
        let book = replica.book("BTC-USD").unwrap();
        assert_eq!(
            book.bids,
            vec![pb::PriceLevel {
                price: 98,
                quantity: 3
            }]
        );
        assert_eq!(replica.sequence(), Some(12));
    }

    #[test]
    fn gaps_duplicates_and_foreign_epochs_are_errors_that_change_nothing() {
        let mut replica = Replica::new();
        assert_eq!(
            replica.apply(&update(1, 1, 98, 3)),
            Err(ReplicaError::NoSnapshot { sequence: 1 })
        );
        replica.apply(&snapshot(1, 10)).unwrap();
        let before = replica.clone();
        assert_eq!(
            replica.apply(&update(1, 12, 98, 3)),
            Err(ReplicaError::Gap {
                expected: 11,
                got: 12
            })
        );
        assert_eq!(
            replica.apply(&update(1, 10, 98, 3)),
            Err(ReplicaError::Duplicate { held: 10, got: 10 })
        );
        assert_eq!(
            replica.apply(&update(2, 11, 98, 3)),
            Err(ReplicaError::EpochChanged { held: 1, got: 2 })
        );
        assert_eq!(replica, before);
    }
}
