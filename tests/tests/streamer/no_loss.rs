//! The proof of no data loss: clients that drop and reconnect at random, hundreds of times,
//! while the simulator runs; each rebuilds the books from what it received and, once the
//! simulator has stopped, holds exactly what `GetBook` returns — no gap, no duplicate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use session_tests::book_replica::Replica;
use session_tests::sse;
use session_tests::stream_fixture::{Fixture, PATIENCE};

use crate::resume::reopen;

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "AAPL"];
const CLIENTS: u64 = 6;
const RECONNECTS_PER_CLIENT: usize = 50;

/// A small deterministic generator (xorshift64*): the test's randomness is repeatable.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

/// One client: reconnects `RECONNECTS_PER_CLIENT` times, alternating at random between
/// `EventSource`'s own reconnect and the reconnect endpoint; then reads until the simulator's
/// final status. Returns its replica.
async fn client(fixture: &Fixture, seed: u64, done: &AtomicU64) -> Replica {
    let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut replica = Replica::default();
    let mut url = fixture.ticket_url().await;
    let mut stream = sse::connect(&url, &[]).await.unwrap();
    let mut reconnects = 0;
    loop {
        let budget = if reconnects < RECONNECTS_PER_CLIENT {
            1 + dice.roll(300) as usize
        } else {
            usize::MAX
        };
        let target = replica.events.saturating_add(budget);
        while replica.events < target {
            let Some(event) = stream.next(PATIENCE).await else {
                break;
            };
            replica.apply(&event);
            if replica.last_status.as_deref() == Some("stopped") {
                return replica;
            }
        }
        assert!(
            reconnects < RECONNECTS_PER_CLIENT,
            "the stream ended before the simulator stopped"
        );
        drop(stream);
        reconnects += 1;
        if reconnects == RECONNECTS_PER_CLIENT {
            done.fetch_add(1, Ordering::SeqCst);
        }
        if dice.roll(4) == 0 {
            tokio::time::sleep(Duration::from_millis(dice.roll(30))).await;
        }
        let last = replica.position().unwrap();
        stream = if dice.roll(2) == 0 {
            reopen(&url, &last).await.unwrap()
        } else {
            let (fresh, _) = fixture.reconnect_url(Some(&last)).await;
            url = fresh;
            sse::connect(&url, &[]).await.unwrap()
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_drop_and_reconnect_hundreds_of_times_end_with_exactly_the_simulators_books() {
    let fixture = Fixture::start(
        &SYMBOLS,
        2_000,
        session_tests::stream_fixture::reconnect_without_limits,
    )
    .await;
    let done = AtomicU64::new(0);

    let clients = (0..CLIENTS).map(|seed| client(&fixture, seed, &done));
    let stopper = async {
        // Once every client has done its reconnects, the simulator stops; the clients read on
        // to its final status.
        tokio::time::timeout(Duration::from_secs(120), async {
            while done.load(Ordering::SeqCst) < CLIENTS {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("every client reconnects within two minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
        fixture.stop_simulator().await;
    };
    let (replicas, ()) = tokio::join!(futures_util::future::join_all(clients), stopper);

    let mut books = Vec::new();
    for symbol in SYMBOLS {
        books.push((symbol, fixture.get_book(symbol).await));
    }
    let total_events: usize = replicas.iter().map(|r| r.events).sum();
    for (i, replica) in replicas.iter().enumerate() {
        assert_eq!(
            replica.resets, 0,
            "client {i}: resumes inside the window replay"
        );
        assert_eq!(replica.conflations, 0, "client {i} kept up");
        for (symbol, book) in &books {
            replica.assert_matches(symbol, book);
        }
    }
    assert!(total_events > 20_000, "{total_events} events checked");
}
