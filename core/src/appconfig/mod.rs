//! Runtime configuration from AWS AppConfig, read through the AppConfig Agent's local HTTP API
//! (the Lambda extension, or the agent beside the streamer), as AWS recommends: the agent
//! caches, retries and authenticates; this process polls it on loopback.
//!
//! Layout: the agent's client and its background poller in `client`, the feature-flag profile
//! and its per-user evaluation in `flags`.

mod client;
mod flags;

pub use client::{AgentClient, AppConfigError};
pub use flags::{Flag, FlagSet, Flags, FlagsError, MAINTENANCE_MODE};
