//! A smoke test for any deployment of the session service: one run walks a frontend's whole
//! path against the endpoints of a local stack or of AWS and says, step by step, what worked.
//!
//! [`endpoints`] reads the endpoints file, [`client`] builds the HTTPS and WSS clients (rustls on
//! aws-lc-rs), [`sse`] and [`ws`] open and read the two transports, [`sequence`] checks that a
//! stream's event ids follow each other, and [`run`] drives the steps and prints them; [`cli`]
//! holds the `smoke` binary's flags.

pub mod api;
pub mod cli;
pub mod client;
pub mod endpoints;
pub mod run;
pub mod sequence;
pub mod sse;
pub mod ws;

mod error;

pub use error::StepError;
