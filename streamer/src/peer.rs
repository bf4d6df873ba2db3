//! The TCP peer of a request, as the streamer's HTTP server accepted it (axum's `ConnectInfo`
//! needs axum's own server; `http1` puts this in every request's extensions instead).

use std::net::SocketAddr;

/// The address of the connection a request came on: its TCP peer, which behind a load balancer
/// is the balancer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr(pub SocketAddr);
