//! A TCP relay on loopback whose traffic can be held, as a store that stops answering for a
//! while: requests through it wait, then go on once it is let go. It can also lose one answer:
//! the request reaches the server, the server's response is dropped and the client's
//! connection closed, as when a write lands and its answer is lost.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::config::StoreBackend;
use session_tests::moto::Moto;
use session_tests::test_api::TestApi;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// At most this many request chunks are kept for [`StallableRelay::requests`].
const KEPT_REQUESTS: usize = 512;

/// The local stack on a fresh table of moto's server, reached through a relay the test can
/// hold; one store request times out after `attempt`, a call after `call`.
pub async fn stack_behind_relay(attempt: Duration, call: Duration) -> (TestApi, StallableRelay) {
    let relay =
        StallableRelay::start(Moto::shared().endpoint().trim_start_matches("http://")).await;
    let table = format!("stall-{}", ulid::Ulid::new().to_string().to_lowercase());
    let api = TestApi::spawn_with(|s| {
        s.store.backend = StoreBackend::Dynamodb;
        s.store.endpoint = Some(relay.endpoint.clone());
        s.store.table_name = table;
        s.store.attempt_timeout_ms = attempt;
        s.store.call_timeout_ms = call;
    })
    .await;
    (api, relay)
}

/// A relay to one upstream address; dropped, it stops accepting.
pub struct StallableRelay {
    /// `http://127.0.0.1:port`, to point a client at instead of the upstream.
    pub endpoint: String,
    held: watch::Sender<bool>,
    taps: Arc<Taps>,
    accept: tokio::task::JoinHandle<()>,
}

/// What the relay watches for and saw, shared by its connections.
#[derive(Default)]
struct Taps {
    /// Armed: the response to the next request containing this text is dropped.
    lose_answer_to: Mutex<Option<String>>,
    /// Responses dropped so far.
    lost: AtomicUsize,
    /// Request chunks seen (the first [`KEPT_REQUESTS`]), as text.
    requests: Mutex<Vec<String>>,
}

impl StallableRelay {
    /// Relays to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (held, watch) = watch::channel(false);
        let taps = Arc::new(Taps::default());
        let upstream = upstream.to_owned();
        let accept_taps = Arc::clone(&taps);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                // Set by a request whose answer is to be lost, on this connection.
                let doomed = Arc::new(AtomicBool::new(false));
                let (taps, doomed_) = (Arc::clone(&accept_taps), Arc::clone(&doomed));
                tokio::spawn(pipe(
                    client_read,
                    server_write,
                    watch.clone(),
                    move |chunk| {
                        taps.saw_request(chunk, &doomed_);
                        true
                    },
                ));
                let taps = Arc::clone(&accept_taps);
                tokio::spawn(pipe(server_read, client_write, watch.clone(), move |_| {
                    if doomed.load(Ordering::SeqCst) {
                        taps.lost.fetch_add(1, Ordering::SeqCst);
                        return false;
                    }
                    true
                }));
            }
        });
        Self {
            endpoint,
            held,
            taps,
            accept,
        }
    }

    /// Holds every byte in either direction until [`Self::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Lets the held bytes and all later ones through.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Loses the answer to the next request containing `text`: the request goes through, the
    /// response is dropped and the client's connection closed.
    pub fn lose_answer_to(&self, text: &str) {
        *self.taps.lose_answer_to.lock().unwrap() = Some(text.to_owned());
    }

    /// How many answers were lost.
    pub fn lost(&self) -> usize {
        self.taps.lost.load(Ordering::SeqCst)
    }

    /// The request chunks relayed so far (the first few hundred), as text.
    pub fn requests(&self) -> Vec<String> {
        self.taps.requests.lock().unwrap().clone()
    }
}

impl Taps {
    fn saw_request(&self, chunk: &[u8], doomed: &AtomicBool) {
        let text = String::from_utf8_lossy(chunk);
        let mut armed = self.lose_answer_to.lock().unwrap();
        if armed.as_deref().is_some_and(|wanted| text.contains(wanted)) {
            *armed = None;
            doomed.store(true, Ordering::SeqCst);
        }
        let mut requests = self.requests.lock().unwrap();
        if requests.len() < KEPT_REQUESTS {
            requests.push(text.into_owned());
        }
    }
}

impl Drop for StallableRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, each chunk once the relay is not held and if `pass` lets it (when it
/// does not, both ends are dropped).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: watch::Receiver<bool>,
    mut pass: impl FnMut(&[u8]) -> bool + Send + 'static,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 || held.wait_for(|held| !held).await.is_err() {
            return;
        }
        if !pass(&buffer[..read]) {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
