//! Local stand-ins for the backends of the session service: a reference exchange simulator and
//! a reference auth service, both speaking exactly the gRPC contracts of `proto/`.
//!
//! Each runs as a binary (`exchange-simulator`, `auth-service`) or in-process on a free loopback
//! port for tests and the local stack ([`simulator::SimulatorServer::spawn`],
//! [`auth::AuthServer::spawn`]). `server` holds what both share: serving until a shutdown
//! future resolves, with a bounded drain, and the handle of a spawned server; `cli` the flags of
//! the binaries. `http_api` and `ws_api` emulate API Gateway's HTTP and WebSocket APIs (the
//! latter with its `@connections` API) in front of the functions; `web` serves the page that
//! uses them from a browser; `stack` runs all of it, `regions` several of it as regions; `ticket_keys` makes connect-ticket keys.

pub mod appconfig;
pub mod auth;
mod call_log;
pub mod cli;
pub mod cloudmap;
pub mod faults;
pub mod http_api;
mod region_endpoints;
pub mod regions;
mod server;
pub mod simulator;
pub mod stack;
pub mod ticket_keys;
pub mod tokens;
pub mod web;
pub mod ws_api;

pub use server::{DRAIN_TIMEOUT, ServerError, ServerHandle, ServerTls, shutdown_signal};
