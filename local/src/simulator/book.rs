//! A pure L2 order book: aggregated price levels per side, with matching.
//!
//! Prices and quantities are scaled integers (`i64`), exactly as on the wire, so a book rebuilt
//! by a client from a snapshot and level updates compares exactly with this one. The book keeps
//! its invariants by construction: an order that would cross the book trades first and only its
//! remainder rests, so best bid < best ask always; every resting quantity is > 0.

use std::collections::BTreeMap;
use std::fmt;

/// A side of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Buy orders.
    Bid,
    /// Sell orders.
    Ask,
}

impl Side {
    /// The other side.
    #[must_use]
    pub const fn opposite(self) -> Self {
        match self {
            Self::Bid => Self::Ask,
            Self::Ask => Self::Bid,
        }
    }
}

/// The new total quantity at one price of one side; 0 removes the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelChange {
    /// Which side.
    pub side: Side,
    /// The level's price.
    pub price: i64,
    /// The level's new total quantity.
    pub quantity: i64,
}

/// One execution of an incoming order against one resting level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// The resting level's price.
    pub price: i64,
    /// How much traded there.
    pub quantity: i64,
    /// The side of the incoming order.
    pub aggressor: Side,
}

/// What one operation did to the book: level changes in the order they happened, and fills.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every level that changed, in order; applying them to the book before the operation gives
    /// the book after it.
    pub changes: Vec<LevelChange>,
    /// Every execution, best price first.
    pub fills: Vec<Fill>,
}

/// A broken book invariant; never produced by a correct engine, reported by tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    /// Best bid at or above best ask.
    #[error("book is crossed: best bid {bid} >= best ask {ask}")]
    Crossed {
        /// Best bid price.
        bid: i64,
        /// Best ask price.
        ask: i64,
    },
    /// A level with a quantity of zero or less.
    #[error("{side:?} level {price} has quantity {quantity}")]
    NonPositiveQuantity {
        /// The level's side.
        side: Side,
        /// The level's price.
        price: i64,
        /// Its quantity.
        quantity: i64,
    },
    /// A level at a price of zero or less.
    #[error("{side:?} level at non-positive price {price}")]
    NonPositivePrice {
        /// The level's side.
        side: Side,
        /// The level's price.
        price: i64,
    },
}

/// An aggregated (L2) order book of one symbol.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Book {
    /// Price → total quantity; best bid is the last key.
    bids: BTreeMap<i64, i64>,
    /// Price → total quantity; best ask is the first key.
    asks: BTreeMap<i64, i64>,
}

impl fmt::Debug for Book {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Book")
            .field("bids", &self.levels(Side::Bid).collect::<Vec<_>>())
            .field("asks", &self.levels(Side::Ask).collect::<Vec<_>>())
            .finish()
    }
}

impl Book {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    fn side(&self, side: Side) -> &BTreeMap<i64, i64> {
        match side {
            Side::Bid => &self.bids,
            Side::Ask => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<i64, i64> {
        match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        }
    }

    /// The highest bid price.
    pub fn best_bid(&self) -> Option<i64> {
        self.bids.keys().next_back().copied()
    }

    /// The lowest ask price.
    pub fn best_ask(&self) -> Option<i64> {
        self.asks.keys().next().copied()
    }

    /// The best price of `side`.
    pub fn best(&self, side: Side) -> Option<i64> {
        match side {
            Side::Bid => self.best_bid(),
            Side::Ask => self.best_ask(),
        }
    }

    /// The worst (furthest from the spread) price of `side`.
    pub fn worst(&self, side: Side) -> Option<i64> {
        match side {
            Side::Bid => self.bids.keys().next().copied(),
            Side::Ask => self.asks.keys().next_back().copied(),
        }
    }

    /// Number of price levels on `side`.
    pub fn depth(&self, side: Side) -> usize {
        self.side(side).len()
    }

    /// The levels of `side`, best first, as `(price, quantity)`.
    pub fn levels(&self, side: Side) -> Box<dyn Iterator<Item = (i64, i64)> + '_> {
        let copy = |(p, q): (&i64, &i64)| (*p, *q);
        match side {
            Side::Bid => Box::new(self.bids.iter().rev().map(copy)),
            Side::Ask => Box::new(self.asks.iter().map(copy)),
        }
    }

    /// The resting quantity at `price` on `side` (0 if no level).
    pub fn quantity_at(&self, side: Side, price: i64) -> i64 {
        self.side(side).get(&price).copied().unwrap_or(0)
    }

    /// Sets a level to `quantity` (0 removes it) and records the change.
    fn set(&mut self, side: Side, price: i64, quantity: i64, out: &mut Outcome) {
        if quantity > 0 {
            self.side_mut(side).insert(price, quantity);
        } else {
            self.side_mut(side).remove(&price);
        }
        out.changes.push(LevelChange {
            side,
            price,
            quantity: quantity.max(0),
        });
    }

    /// Trades an incoming `aggressor` order of `quantity` against the other side, best level
    /// first, while the level's price is within `limit` (any price when `None`). Returns the
    /// quantity left unfilled.
    fn take(
        &mut self,
        aggressor: Side,
        limit: Option<i64>,
        quantity: i64,
        out: &mut Outcome,
    ) -> i64 {
        let resting = aggressor.opposite();
        let mut left = quantity;
        while left > 0 {
            let Some(price) = self.best(resting) else {
                break;
            };
            let crosses = match (aggressor, limit) {
                (_, None) => true,
                (Side::Bid, Some(limit)) => price <= limit,
                (Side::Ask, Some(limit)) => price >= limit,
            };
            if !crosses {
                break;
            }
            let available = self.quantity_at(resting, price);
            let traded = available.min(left);
            left -= traded;
            out.fills.push(Fill {
                price,
                quantity: traded,
                aggressor,
            });
            self.set(resting, price, available - traded, out);
        }
        left
    }

    /// A limit order: trades with every level it crosses, then rests what is left at `price`.
    /// Ignored unless `price` and `quantity` are > 0.
    pub fn limit(&mut self, side: Side, price: i64, quantity: i64, out: &mut Outcome) {
        if price <= 0 || quantity <= 0 {
            return;
        }
        let left = self.take(side, Some(price), quantity, out);
        if left > 0 {
            let total = self.quantity_at(side, price) + left;
            self.set(side, price, total, out);
        }
    }

    /// A market order: walks the other side until `quantity` is filled or the side is empty;
    /// an unfilled remainder is dropped (immediate-or-cancel).
    pub fn market(&mut self, side: Side, quantity: i64, out: &mut Outcome) {
        if quantity > 0 {
            self.take(side, None, quantity, out);
        }
    }

    /// Cancels up to `quantity` resting at `price` on `side`; a level reduced to 0 is removed.
    /// Returns the quantity cancelled.
    pub fn cancel(&mut self, side: Side, price: i64, quantity: i64, out: &mut Outcome) -> i64 {
        let resting = self.quantity_at(side, price);
        let cancelled = resting.min(quantity.max(0));
        if cancelled > 0 {
            self.set(side, price, resting - cancelled, out);
        }
        cancelled
    }

    /// Applies one level change as a market-data client does: sets the level, 0 removes it.
    pub fn apply(&mut self, change: LevelChange) {
        if change.quantity > 0 {
            self.side_mut(change.side)
                .insert(change.price, change.quantity);
        } else {
            self.side_mut(change.side).remove(&change.price);
        }
    }

    /// Checks every invariant: not crossed, every price and quantity > 0.
    ///
    /// # Errors
    /// The first invariant found broken.
    pub fn check(&self) -> Result<(), InvariantViolation> {
        if let (Some(bid), Some(ask)) = (self.best_bid(), self.best_ask())
            && bid >= ask
        {
            return Err(InvariantViolation::Crossed { bid, ask });
        }
        for side in [Side::Bid, Side::Ask] {
            for (price, quantity) in self.levels(side) {
                if price <= 0 {
                    return Err(InvariantViolation::NonPositivePrice { side, price });
                }
                if quantity <= 0 {
                    return Err(InvariantViolation::NonPositiveQuantity {
                        side,
                        price,
                        quantity,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(bids: &[(i64, i64)], asks: &[(i64, i64)]) -> Book {
        let mut book = Book::new();
        for &(price, quantity) in bids {
            book.apply(LevelChange {
                side: Side::Bid,
                price,
                quantity,
            });
        }
        for &(price, quantity) in asks {
            book.apply(LevelChange {
                side: Side::Ask,
                price,
                quantity,
            });
        }
        book
    }

    #[test]
    fn a_passive_limit_order_rests_and_adds_to_its_level() {
        let mut b = book(&[(99, 5)], &[(101, 5)]);
        let mut out = Outcome::default();
        b.limit(Side::Bid, 99, 3, &mut out);
        b.limit(Side::Bid, 98, 2, &mut out);
        assert_eq!(b.quantity_at(Side::Bid, 99), 8);
        assert_eq!(b.best_bid(), Some(99));
        assert_eq!(b.depth(Side::Bid), 2);
        assert!(out.fills.is_empty());
        assert_eq!(out.changes.len(), 2);
        b.check().unwrap();
    }

    #[test]
    fn a_crossing_limit_order_trades_then_rests_its_remainder() {
        let mut b = book(&[(99, 5)], &[(101, 2), (102, 3), (104, 9)]);
        let mut out = Outcome::default();
        b.limit(Side::Bid, 102, 10, &mut out);
        assert_eq!(
            out.fills,
            vec![
                Fill {
                    price: 101,
                    quantity: 2,
                    aggressor: Side::Bid
                },
                Fill {
                    price: 102,
                    quantity: 3,
                    aggressor: Side::Bid
                }
            ]
        );
        assert_eq!(b.best_bid(), Some(102));
        assert_eq!(b.quantity_at(Side::Bid, 102), 5);
        assert_eq!(b.best_ask(), Some(104));
        b.check().unwrap();
    }

    #[test]
    fn a_market_order_walks_the_book_and_drops_what_it_cannot_fill() {
        let mut b = book(&[(99, 5), (98, 1)], &[(101, 5)]);
        let mut out = Outcome::default();
        b.market(Side::Ask, 4, &mut out);
        assert_eq!(b.quantity_at(Side::Bid, 99), 1);
        b.market(Side::Ask, 100, &mut out);
        assert_eq!(b.depth(Side::Bid), 0);
        assert_eq!(
            out.fills.iter().map(|f| f.quantity).sum::<i64>(),
            6,
            "everything resting traded, nothing more"
        );
        b.check().unwrap();
    }

    #[test]
    fn cancel_never_takes_more_than_rests() {
        let mut b = book(&[(99, 5)], &[]);
        let mut out = Outcome::default();
        assert_eq!(b.cancel(Side::Bid, 99, 2, &mut out), 2);
        assert_eq!(b.cancel(Side::Bid, 99, 10, &mut out), 3);
        assert_eq!(b.cancel(Side::Bid, 99, 1, &mut out), 0);
        assert_eq!(b.depth(Side::Bid), 0);
        assert_eq!(out.changes.last().unwrap().quantity, 0);
    }

    #[test]
    fn replaying_the_changes_of_an_operation_gives_the_same_book() {
        let mut b = book(&[(99, 5), (97, 2)], &[(101, 2), (103, 4)]);
        let mut replica = b.clone();
        let mut out = Outcome::default();
        b.limit(Side::Ask, 97, 9, &mut out);
        b.cancel(Side::Ask, 103, 1, &mut out);
        for change in &out.changes {
            replica.apply(*change);
        }
        assert_eq!(replica, b);
        b.check().unwrap();
    }

    #[test]
    fn check_reports_a_crossed_book() {
        let b = book(&[(101, 1)], &[(101, 1)]);
        assert_eq!(
            b.check(),
            Err(InvariantViolation::Crossed { bid: 101, ask: 101 })
        );
    }
}
