//! Generated code for the backends' gRPC contracts (`proto/**/*.proto`).
//!
//! `auth::v1` validates bearer tokens; `simulator::v1` controls exchange simulators and streams
//! their market data. The `.proto` files are the documentation of every message and field.

#![allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::pedantic,
    clippy::all
)]

/// Token validation (`auth.v1`).
pub mod auth {
    /// Version 1 of the auth contract.
    pub mod v1 {
        tonic::include_proto!("auth.v1");
    }
}

/// Simulator lifecycle and market data (`simulator.v1`).
pub mod simulator {
    /// Version 1 of the simulator contract.
    pub mod v1 {
        tonic::include_proto!("simulator.v1");
    }
}
