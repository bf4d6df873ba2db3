//! The deterministic market generator: L2 dynamics for every symbol of an instance.
//!
//! One `ChaCha8Rng` seeded from the instance's seed drives everything, and events come out one
//! at a time from [`Engine::next_event`], so the same seed and event count give the same events
//! however the caller batches them (ChaCha is portable: the same on every platform).
//!
//! Each step picks a symbol and an action around a "fair price" that drifts as a random walk:
//! passive limit orders rest near the spread, cancels shrink or remove levels, market orders and
//! marketable limit orders walk the book and trade. Aggressors lean towards the fair price, so
//! the mid follows it. Depth stays between [`EngineConfig::min_depth`] (the thin side gets the
//! new orders) and [`EngineConfig::max_depth`] (the furthest levels are dropped) levels a side.
//!
//! An action becomes one [`Event::Update`] with every level it changed, followed by one
//! [`Event::Trade`] per level it traded with. The update comes first on purpose: the book
//! changes only when the update is handed out, and trades never change it, so after any number
//! of events [`Engine::book`] is exactly the book a client holds after applying them.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::book::{Book, LevelChange, Outcome, Side};

/// Shape of the generated books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Decimal places of prices: 2 means a tick of 0.01.
    pub price_scale: u32,
    /// Decimal places of quantities: 4 means a lot of 0.0001.
    pub quantity_scale: u32,
    /// Fewest levels a side keeps: below it new passive orders go to the thin side.
    pub min_depth: usize,
    /// Most levels a side keeps: beyond it the furthest levels are cancelled.
    pub max_depth: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            price_scale: 2,
            quantity_scale: 4,
            min_depth: 10,
            max_depth: 40,
        }
    }
}

/// One market event of one symbol (identified by its index in the instance's symbols).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Changed levels of one symbol, applied in order.
    Update {
        /// Index of the symbol.
        symbol: usize,
        /// The new totals of the changed levels.
        changes: Vec<LevelChange>,
    },
    /// One execution against one resting level.
    Trade {
        /// Index of the symbol.
        symbol: usize,
        /// Unique within the engine's life (one epoch of an instance).
        trade_id: u64,
        /// Execution price.
        price: i64,
        /// Executed quantity.
        quantity: i64,
        /// Side of the incoming order.
        aggressor: Side,
    },
}

/// The state of one symbol.
#[derive(Debug, Clone)]
struct Market {
    book: Book,
    /// Where the market "should" trade, in ticks; drifts as a random walk.
    fair: i64,
}

/// Generates the market events of one instance, deterministically from its seed.
#[derive(Debug, Clone)]
pub struct Engine {
    rng: ChaCha8Rng,
    config: EngineConfig,
    markets: Vec<Market>,
    /// Events of the current action not handed out yet (trades after its update).
    pending: VecDeque<Event>,
    next_trade_id: u64,
}

/// Quantities are whole multiples of this many smallest units (0.01 with `quantity_scale` 4).
const LOT: i64 = 100;

impl Engine {
    /// An engine for `symbols` books, each seeded with an initial book around its own price.
    pub fn new(seed: u64, symbols: usize, config: EngineConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut markets = Vec::with_capacity(symbols);
        for _ in 0..symbols {
            let fair = rng.random_range(2_000..200_000);
            let mut book = Book::new();
            let mut scratch = Outcome::default();
            let initial = config.min_depth.midpoint(config.max_depth) as i64;
            let half_spread = rng.random_range(1..=3);
            for level in 0..initial {
                for side in [Side::Bid, Side::Ask] {
                    let price = match side {
                        Side::Bid => fair - half_spread - level,
                        Side::Ask => fair + half_spread + level,
                    };
                    let quantity = Self::random_quantity(&mut rng);
                    book.limit(side, price, quantity, &mut scratch);
                }
            }
            markets.push(Market { book, fair });
        }
        Self {
            rng,
            config,
            markets,
            pending: VecDeque::new(),
            next_trade_id: 1,
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// The book of symbol `index` as of every event handed out so far.
    pub fn book(&self, index: usize) -> &Book {
        &self.markets[index].book
    }

    /// Number of symbols.
    pub fn symbols(&self) -> usize {
        self.markets.len()
    }

    /// The next event.
    pub fn next_event(&mut self) -> Event {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            self.step();
        }
    }

    fn random_quantity(rng: &mut ChaCha8Rng) -> i64 {
        // Mostly small orders, now and then a big one, as on real books.
        let lots = if rng.random_ratio(1, 10) {
            rng.random_range(50..=500)
        } else {
            rng.random_range(1..=50)
        };
        lots * LOT
    }

    /// Generates one action of one symbol; queues its events (none if it changed nothing).
    fn step(&mut self) {
        let index = self.rng.random_range(0..self.markets.len());
        if self.rng.random_ratio(1, 5) {
            let market = &mut self.markets[index];
            market.fair = (market.fair + if self.rng.random() { 1 } else { -1 }).max(10);
        }
        let mut out = Outcome::default();
        let action = self.rng.random_range(0..100);
        match action {
            0..50 => self.passive(index, &mut out),
            50..78 => self.cancel(index, &mut out),
            78..90 => self.market_order(index, &mut out),
            _ => self.marketable_limit(index, &mut out),
        }
        self.trim(index, &mut out);
        self.queue(index, out);
    }

    /// The side an aggressor is on: towards the fair price seven times in ten.
    fn aggressor_side(&mut self, index: usize) -> Side {
        let market = &self.markets[index];
        let (Some(bid), Some(ask)) = (market.book.best_bid(), market.book.best_ask()) else {
            return if self.rng.random() {
                Side::Bid
            } else {
                Side::Ask
            };
        };
        let mid2 = bid + ask;
        let towards = match (2 * market.fair).cmp(&mid2) {
            std::cmp::Ordering::Greater => Side::Bid,
            std::cmp::Ordering::Less => Side::Ask,
            std::cmp::Ordering::Equal => {
                return if self.rng.random() {
                    Side::Bid
                } else {
                    Side::Ask
                };
            }
        };
        if self.rng.random_ratio(7, 10) {
            towards
        } else {
            towards.opposite()
        }
    }

    /// A resting order near the spread; the thin side first when a side is below `min_depth`.
    fn passive(&mut self, index: usize, out: &mut Outcome) {
        let min_depth = self.config.min_depth;
        let book = &self.markets[index].book;
        let (bids, asks) = (book.depth(Side::Bid), book.depth(Side::Ask));
        let side = if bids < min_depth && bids <= asks {
            Side::Bid
        } else if asks < min_depth {
            Side::Ask
        } else if self.rng.random() {
            Side::Bid
        } else {
            Side::Ask
        };
        // Offsets cluster near the touch: the sum of two draws is triangular around a few ticks.
        let spread = (self.config.max_depth as i64 / 2).max(1);
        let offset = self.rng.random_range(0..spread) / 2 + self.rng.random_range(0..spread) / 2;
        let market = &self.markets[index];
        let price = match side {
            Side::Bid => {
                let reference = market
                    .book
                    .best_ask()
                    .map_or(market.fair, |ask| market.fair.min(ask - 1));
                reference - offset
            }
            Side::Ask => {
                let reference = market
                    .book
                    .best_bid()
                    .map_or(market.fair, |bid| market.fair.max(bid + 1));
                reference + offset
            }
        };
        let quantity = Self::random_quantity(&mut self.rng);
        self.markets[index].book.limit(side, price, quantity, out);
    }

    /// Cancels all or part of a random level of a random side.
    fn cancel(&mut self, index: usize, out: &mut Outcome) {
        let side = if self.rng.random() {
            Side::Bid
        } else {
            Side::Ask
        };
        let book = &self.markets[index].book;
        let depth = book.depth(side);
        if depth <= 1 {
            // Never cancel a side away: a one-sided book has no mid.
            return self.passive(index, out);
        }
        let nth = self.rng.random_range(0..depth);
        let Some((price, resting)) = book.levels(side).nth(nth) else {
            return;
        };
        let quantity = if self.rng.random() {
            resting
        } else {
            self.rng.random_range(1..=(resting / LOT).max(1)) * LOT
        };
        self.markets[index].book.cancel(side, price, quantity, out);
    }

    /// A market order that takes one to a few levels, never the whole side.
    fn market_order(&mut self, index: usize, out: &mut Outcome) {
        let side = self.aggressor_side(index);
        let book = &self.markets[index].book;
        let resting = side.opposite();
        if book.depth(resting) < 2 {
            return self.passive(index, out);
        }
        let levels = self.rng.random_range(1..=3).min(book.depth(resting) - 1);
        let reachable: i64 = book.levels(resting).take(levels).map(|(_, q)| q).sum();
        let lots = (reachable / LOT).max(1);
        let quantity = self.rng.random_range(1..=lots) * LOT;
        self.markets[index].book.market(side, quantity, out);
    }

    /// A limit order priced through the touch: it trades, then its remainder rests as the new
    /// best price of its side.
    fn marketable_limit(&mut self, index: usize, out: &mut Outcome) {
        let side = self.aggressor_side(index);
        let book = &self.markets[index].book;
        // At most three levels (touch + 0..=2 ticks) can trade: with four or more resting, the
        // side never runs empty.
        let (Some(touch), 4..) = (book.best(side.opposite()), book.depth(side.opposite())) else {
            return self.passive(index, out);
        };
        let through = self.rng.random_range(0..=2);
        let price = match side {
            Side::Bid => touch + through,
            Side::Ask => (touch - through).max(1),
        };
        let quantity = Self::random_quantity(&mut self.rng);
        self.markets[index].book.limit(side, price, quantity, out);
    }

    /// Cancels the furthest levels of any side deeper than `max_depth`.
    fn trim(&mut self, index: usize, out: &mut Outcome) {
        let max_depth = self.config.max_depth;
        let book = &mut self.markets[index].book;
        for side in [Side::Bid, Side::Ask] {
            while book.depth(side) > max_depth {
                let Some(price) = book.worst(side) else {
                    break;
                };
                let resting = book.quantity_at(side, price);
                book.cancel(side, price, resting, out);
            }
        }
    }

    /// Turns an action's outcome into its events: the update, then one trade per fill.
    fn queue(&mut self, symbol: usize, out: Outcome) {
        if out.changes.is_empty() {
            return;
        }
        self.pending.push_back(Event::Update {
            symbol,
            changes: out.changes,
        });
        for fill in out.fills {
            self.pending.push_back(Event::Trade {
                symbol,
                trade_id: self.next_trade_id,
                price: fill.price,
                quantity: fill.quantity,
                aggressor: fill.aggressor,
            });
            self.next_trade_id += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(seed: u64, count: usize) -> Vec<Event> {
        let mut engine = Engine::new(seed, 3, EngineConfig::default());
        (0..count).map(|_| engine.next_event()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
        assert_eq!(events(42, 5_000), events(42, 5_000));
        assert_ne!(events(42, 5_000), events(43, 5_000));
    }

    #[test]
    fn the_books_keep_every_invariant_after_every_event_of_a_long_run() {
        let config = EngineConfig::default();
        let mut engine = Engine::new(7, 4, config);
        let mut trades = 0;
        for n in 0..200_000 {
            let event = engine.next_event();
            let symbol = match event {
                Event::Update {
                    symbol,
                    ref changes,
                } => {
                    assert!(!changes.is_empty());
                    assert!(changes.iter().all(|c| c.quantity >= 0 && c.price > 0));
                    symbol
                }
                Event::Trade {
                    symbol,
                    price,
                    quantity,
                    ..
                } => {
                    trades += 1;
                    assert!(price > 0 && quantity > 0, "event {n}: {event:?}");
                    symbol
                }
            };
            let book = engine.book(symbol);
            book.check()
                .unwrap_or_else(|e| panic!("after event {n}: {e}"));
            for side in [Side::Bid, Side::Ask] {
                assert!(book.depth(side) <= config.max_depth, "event {n}");
                assert!(book.depth(side) >= 1, "event {n}: a side ran empty");
            }
        }
        assert!(trades > 10_000, "market orders trade: {trades} trades");
    }

    #[test]
    fn applying_the_updates_rebuilds_the_engines_books_after_every_event() {
        let mut engine = Engine::new(11, 2, EngineConfig::default());
        let mut replicas: Vec<Book> = (0..2).map(|i| engine.book(i).clone()).collect();
        for n in 0..50_000 {
            let symbol = match engine.next_event() {
                Event::Update { symbol, changes } => {
                    for change in changes {
                        replicas[symbol].apply(change);
                    }
                    symbol
                }
                Event::Trade { symbol, .. } => symbol,
            };
            assert_eq!(&replicas[symbol], engine.book(symbol), "after event {n}");
        }
    }

    #[test]
    fn the_mid_price_moves_over_a_run() {
        let mut engine = Engine::new(3, 1, EngineConfig::default());
        let start = engine.book(0).best_bid().unwrap();
        let mut moved = 0;
        for _ in 0..20_000 {
            engine.next_event();
            moved = moved.max((engine.book(0).best_bid().unwrap() - start).abs());
        }
        assert!(moved >= 5, "best bid moved at most {moved} ticks");
    }

    #[test]
    fn trade_ids_count_up_from_one() {
        let ids: Vec<u64> = events(5, 20_000)
            .into_iter()
            .filter_map(|e| match e {
                Event::Trade { trade_id, .. } => Some(trade_id),
                Event::Update { .. } => None,
            })
            .collect();
        assert!(!ids.is_empty());
        assert!(ids.iter().zip(1..).all(|(id, n)| *id == n));
    }
}
