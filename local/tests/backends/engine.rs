//! The simulator's market engine in-process, over runs far longer than a test stream: the
//! books' invariants after every event, and determinism per seed and event count.

use session_local::simulator::{Engine, EngineConfig, Event, Side};

const SEEDS: [u64; 4] = [0, 7, 4_242, u64::MAX];
const EVENTS: usize = 150_000;

fn events(seed: u64, symbols: usize, count: usize) -> Vec<Event> {
    let mut engine = Engine::new(seed, symbols, EngineConfig::default());
    (0..count).map(|_| engine.next_event()).collect()
}

#[test]
fn the_books_keep_every_invariant_after_every_event_of_long_runs_of_several_seeds() {
    let config = EngineConfig::default();
    for seed in SEEDS {
        // Arrange
        let mut engine = Engine::new(seed, 3, config);
        let mut counts = (0_u64, 0_u64);
        for symbol in 0..3 {
            engine
                .book(symbol)
                .check()
                .expect("the initial book is sound");
        }

        for n in 0..EVENTS {
            // Act
            let event = engine.next_event();

            // Assert: the event itself, then the book it changed.
            let symbol = match &event {
                Event::Update { symbol, changes } => {
                    counts.0 += 1;
                    assert!(!changes.is_empty(), "seed {seed}, event {n}: empty update");
                    assert!(
                        changes.iter().all(|c| c.price > 0 && c.quantity >= 0),
                        "seed {seed}, event {n}: {event:?}"
                    );
                    *symbol
                }
                Event::Trade {
                    symbol,
                    price,
                    quantity,
                    ..
                } => {
                    counts.1 += 1;
                    assert!(
                        *price > 0 && *quantity > 0,
                        "seed {seed}, event {n}: {event:?}"
                    );
                    *symbol
                }
            };
            let book = engine.book(symbol);
            book.check()
                .unwrap_or_else(|e| panic!("seed {seed}, after event {n}: {e}"));
            for side in [Side::Bid, Side::Ask] {
                let depth = book.depth(side);
                assert!(
                    (1..=config.max_depth).contains(&depth),
                    "seed {seed}, after event {n}: {side:?} depth {depth}"
                );
            }
        }
        // Realistic dynamics: both kinds of event, trades a good share of them.
        let (updates, trades) = counts;
        assert!(
            trades * 20 > updates,
            "seed {seed}: {updates} updates, {trades} trades"
        );
    }
}

#[test]
fn the_same_seed_and_event_count_give_the_same_events_and_books() {
    for seed in SEEDS {
        let mut a = Engine::new(seed, 4, EngineConfig::default());
        let mut b = Engine::new(seed, 4, EngineConfig::default());
        for n in 0..50_000 {
            assert_eq!(a.next_event(), b.next_event(), "seed {seed}, event {n}");
        }
        for symbol in 0..4 {
            assert_eq!(
                a.book(symbol),
                b.book(symbol),
                "seed {seed}, symbol {symbol}"
            );
        }
    }
}

#[test]
fn different_seeds_give_different_markets() {
    let runs: Vec<_> = SEEDS.iter().map(|seed| events(*seed, 2, 1_000)).collect();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn the_mid_price_wanders_and_the_spread_stays_positive_over_a_long_run() {
    let mut engine = Engine::new(31, 1, EngineConfig::default());
    let mid = |engine: &Engine| {
        let book = engine.book(0);
        book.best_bid().unwrap() + book.best_ask().unwrap()
    };
    let start = mid(&engine);
    let (mut lowest, mut highest) = (start, start);
    for _ in 0..EVENTS {
        engine.next_event();
        let book = engine.book(0);
        assert!(book.best_bid().unwrap() < book.best_ask().unwrap());
        lowest = lowest.min(mid(&engine));
        highest = highest.max(mid(&engine));
    }
    // Mid price doubled (bid + ask) is in half ticks: the price moved by at least ten ticks.
    assert!(
        highest - lowest >= 20,
        "mid moved {} half ticks",
        highest - lowest
    );
}
