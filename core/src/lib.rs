//! The session service core: the domain, its ports (store traits) with their DynamoDB and
//! in-memory adapters, configuration and telemetry.
//!
//! Layout: `domain` knows nothing of AWS or HTTP; `store` holds the ports and adapters; `config`
//! and `telemetry` are each set up in one place for every binary.

pub mod appconfig;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod clock;
pub mod component;
pub mod config;
pub mod discovery;
pub mod domain;
#[cfg(feature = "http")]
pub mod http;
pub mod metrics_catalog;
pub mod ratelimit;
pub mod resilience;
pub mod secrets;
pub mod service;
pub mod store;
pub mod telemetry;
