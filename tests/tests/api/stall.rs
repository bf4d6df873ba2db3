//! A TCP relay on loopback whose traffic can be held, as a store that stops answering for a
//! while: requests through it wait, then go on once it is let go.

use session_core::config::StoreBackend;
use session_tests::moto::Moto;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::TestApi;

/// The local stack on a fresh table of moto's server, reached through a relay the test can
/// hold; one store request times out after `attempt_ms`, a call after `call_ms`.
pub async fn stack_behind_relay(attempt_ms: u64, call_ms: u64) -> (TestApi, StallableRelay) {
    let relay =
        StallableRelay::start(Moto::shared().endpoint().trim_start_matches("http://")).await;
    let table = format!("stall-{}", ulid::Ulid::new().to_string().to_lowercase());
    let api = TestApi::spawn_with(|s| {
        s.store.backend = StoreBackend::Dynamodb;
        s.store.endpoint = Some(relay.endpoint.clone());
        s.store.table_name = table;
        s.store.attempt_timeout_ms = attempt_ms;
        s.store.call_timeout_ms = call_ms;
    })
    .await;
    (api, relay)
}

/// A relay to one upstream address; dropped, it stops accepting.
pub struct StallableRelay {
    /// `http://127.0.0.1:port`, to point a client at instead of the upstream.
    pub endpoint: String,
    held: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl StallableRelay {
    /// Relays to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (held, watch) = watch::channel(false);
        let upstream = upstream.to_owned();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, watch.clone()));
                tokio::spawn(pipe(server_read, client_write, watch.clone()));
            }
        });
        Self {
            endpoint,
            held,
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
}

impl Drop for StallableRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, each chunk once the relay is not held.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 || held.wait_for(|held| !held).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
