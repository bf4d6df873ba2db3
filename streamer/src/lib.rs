//! The long-lived streamer: simulator gRPC streams fanned out to browsers over SSE.
//!
//! Layout: the [`hub`] keeps per simulator the current books and a bounded window of encoded
//! events, fed by one task per stream that follows the simulator through [`upstream`] (the
//! gRPC source, which knows nothing of the hub); `sse` serves clients from the hub, [`push`]
//! WebSocket connections; [`app`] is the service around them (routes, health, metrics), with
//! the handlers' shared state in `state` and the drain signal in `drain`; [`runtime`] the
//! settings that change without a restart. [`wire`] is what
//! clients receive; [`StreamerError`] why the streamer could not start or serve. The module
//! graph has no cycles (checked by the `layering` test).

mod admission;
pub mod app;
pub mod beat;
pub mod book;
pub mod cloudwatch;
mod compression;
mod drain;
pub mod error;
mod http1;
pub mod hub;
mod limits;
pub mod metrics;
mod peer;
pub mod push;
pub mod runtime;
pub mod settings;
mod socket;
mod sse;
mod sse_error;
mod state;
pub mod upstream;
pub mod wire;

pub use app::{Streamer, StreamerParts};
pub use error::StreamerError;
pub use settings::StreamerSettings;

#[cfg(test)]
mod layering;
