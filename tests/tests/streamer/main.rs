//! The streamer end to end: the local stack (REST API for sessions, simulators and tickets; the
//! exchange simulator over real gRPC; the streamer) on loopback, read by real SSE clients that
//! rebuild the books and compare them with the simulator's `GetBook`.

#![allow(unreachable_pub, clippy::unwrap_used)]

mod ws;

mod admission;
mod aws_calls;
mod bearer_scopes;
mod chaos;
mod discovery;
mod handover;
mod metrics;
mod no_loss;
mod push;
mod push_fairness;
mod rate_limits;
mod resume;
mod runtime_settings;
mod service;
mod slow;
mod sse_compression;
mod streams;
mod ticket_keys;
mod ws_compression;
mod ws_push;
