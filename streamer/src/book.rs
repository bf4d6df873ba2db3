//! The current order books of one stream, rebuilt from its events.
//!
//! The streamer keeps them so that it can hand any client a fresh snapshot (a new client, a
//! conflated slow one, a reset) without asking the simulator again.

use std::collections::BTreeMap;

use session_core::domain::EventId;
use session_proto::simulator::v1::{Book, BookUpdate, Side, market_event};

/// The L2 book of one symbol: price → quantity per side, in scaled integers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolBook {
    /// The instrument.
    pub symbol: String,
    /// Decimal places of prices.
    pub price_scale: u32,
    /// Decimal places of quantities.
    pub quantity_scale: u32,
    /// Bids by price (best is the last).
    pub bids: BTreeMap<i64, i64>,
    /// Asks by price (best is the first).
    pub asks: BTreeMap<i64, i64>,
}

impl SymbolBook {
    fn from_proto(book: &Book) -> Self {
        let levels = |levels: &[session_proto::simulator::v1::PriceLevel]| {
            levels.iter().map(|l| (l.price, l.quantity)).collect()
        };
        Self {
            symbol: book.symbol.clone(),
            price_scale: book.price_scale,
            quantity_scale: book.quantity_scale,
            bids: levels(&book.bids),
            asks: levels(&book.asks),
        }
    }

    fn apply(&mut self, update: &BookUpdate) {
        for level in &update.levels {
            let side = match Side::try_from(level.side) {
                Ok(Side::Bid) => &mut self.bids,
                Ok(Side::Ask) => &mut self.asks,
                // An unknown side cannot be placed; the snapshot after a reset repairs it.
                _ => continue,
            };
            if level.quantity == 0 {
                side.remove(&level.price);
            } else {
                side.insert(level.price, level.quantity);
            }
        }
    }
}

/// Every book of a stream as of one position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Books {
    /// The position the books reflect (`None` before the first snapshot).
    pub at: Option<EventId>,
    /// One book per symbol, in the simulator's symbol order.
    pub symbols: Vec<SymbolBook>,
}

impl Books {
    /// Applies one event of the stream. A snapshot replaces everything; updates change levels;
    /// every sequenced event moves the position.
    pub fn apply(&mut self, epoch: u64, sequence: u64, kind: &market_event::Kind) {
        match kind {
            market_event::Kind::Snapshot(snapshot) => {
                self.symbols = snapshot.books.iter().map(SymbolBook::from_proto).collect();
            }
            market_event::Kind::Update(update) => {
                if let Some(book) = self.symbol_mut(&update.symbol) {
                    book.apply(update);
                }
            }
            market_event::Kind::Trade(_) | market_event::Kind::Status(_) => {}
        }
        self.at = Some(EventId { epoch, sequence });
    }

    /// The book of `symbol`.
    pub fn symbol(&self, symbol: &str) -> Option<&SymbolBook> {
        self.symbols.iter().find(|b| b.symbol == symbol)
    }

    /// The symbols and their scales without their levels: all that encoding an event needs.
    #[must_use]
    pub fn scales(&self) -> Self {
        Self {
            at: self.at,
            symbols: self
                .symbols
                .iter()
                .map(|b| SymbolBook {
                    symbol: b.symbol.clone(),
                    price_scale: b.price_scale,
                    quantity_scale: b.quantity_scale,
                    ..SymbolBook::default()
                })
                .collect(),
        }
    }

    fn symbol_mut(&mut self, symbol: &str) -> Option<&mut SymbolBook> {
        self.symbols.iter_mut().find(|b| b.symbol == symbol)
    }
}

#[cfg(test)]
mod tests {
    use session_proto::simulator::v1::{BookSnapshot, LevelUpdate, PriceLevel};

    use super::*;

    fn snapshot() -> market_event::Kind {
        market_event::Kind::Snapshot(BookSnapshot {
            books: vec![Book {
                symbol: "BTC-USD".into(),
                price_scale: 2,
                quantity_scale: 3,
                bids: vec![PriceLevel {
                    price: 100,
                    quantity: 5,
                }],
                asks: vec![PriceLevel {
                    price: 101,
                    quantity: 7,
                }],
            }],
            reset: false,
        })
    }

    #[test]
    fn updates_set_and_remove_levels_and_move_the_position() {
        let mut books = Books::default();
        books.apply(3, 10, &snapshot());
        let update = |side: Side, price, quantity| LevelUpdate {
            side: side as i32,
            price,
            quantity,
        };
        books.apply(
            3,
            11,
            &market_event::Kind::Update(BookUpdate {
                symbol: "BTC-USD".into(),
                levels: vec![
                    update(Side::Bid, 99, 2),
                    update(Side::Ask, 101, 0),
                    update(Side::Bid, 100, 6),
                ],
            }),
        );
        let book = books.symbol("BTC-USD").unwrap();
        assert_eq!(book.bids, BTreeMap::from([(99, 2), (100, 6)]));
        assert!(book.asks.is_empty());
        assert_eq!(
            books.at,
            Some(EventId {
                epoch: 3,
                sequence: 11
            })
        );
    }
}
