//! The REST API end to end: the local stack (HTTP API emulator, authorizer and REST functions
//! through their real event payloads, auth service and exchange simulator over real gRPC) on
//! loopback, driven over HTTP; the WebSocket API emulator driven by a real WebSocket client and
//! the AWS SDK's `@connections` client.

#![allow(unreachable_pub, clippy::unwrap_used)]

mod contract;
mod discovery;
mod edge;
mod gateway;
mod idempotency;
mod maintenance;
mod problems;
mod quotas;
mod rate_limits;
mod regions;
mod retries;
mod revocation;
mod runtime_settings;
mod scopes;
mod sessions;
mod simulators;
mod stall;
mod tickets;
mod websocket;
mod ws_emulator;
