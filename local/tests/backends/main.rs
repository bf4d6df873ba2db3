//! Integration tests of the reference backends: over real gRPC on loopback TCP (servers
//! spawned in-process on port 0, plaintext or mutual TLS), plus the market engine in-process and
//! the two binaries.

mod auth;
mod binaries;
mod engine;
mod faults;
mod helpers;
mod simulator;
mod tls;
mod token_validator;
