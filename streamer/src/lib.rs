//! The long-lived streamer: simulator gRPC streams fanned out to browsers over SSE.
//!
//! Layout: [`upstream`] holds one `MarketData.Subscribe` stream per simulator and feeds the
//! [`hub`], which keeps per stream the current books and a bounded window of encoded events;
//! `sse` serves clients from the hub; [`app`] is the service around them (routes, health,
//! metrics, drain). [`wire`] is what clients receive.

mod admission;
pub mod app;
pub mod book;
pub mod cloudwatch;
mod http1;
pub mod hub;
pub mod metrics;
mod peer;
pub mod push;
mod sse;
pub mod upstream;
pub mod wire;

pub use app::{Streamer, StreamerParts};
