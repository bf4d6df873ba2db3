//! Rate limits per user, per source address and per connection at every door (REST, WebSocket
//! `$connect` and messages, SSE opens), exact across Lambda instances and streamer pods.
//!
//! **Algorithm: GCRA** (generic cell rate algorithm, [`gcra`]), a leaky bucket kept as one
//! number per key, the theoretical arrival time (TAT). Chosen over fixed or sliding windows
//! because: one attribute per key makes each decision one conditional `UpdateItem` (a sliding
//! window needs a counter per window and a read of two); it has no window boundary at which a
//! caller can spend two windows' worth at once; and the TAT gives the exact `Retry-After` and
//! remaining allowance for the `RateLimit` headers.
//!
//! Layout: [`gcra`] the arithmetic, [`policy`] the classes and keys, [`limiter`] the limiter
//! with its in-process pre-filter (in front of the store's [`crate::store::RateLimitStore`]),
//! [`error`] the refusal and its headers.

pub mod error;
pub mod gcra;
pub mod limiter;
pub mod policy;

pub use error::RateLimited;
pub use gcra::{Decision, Rate};
pub use limiter::RateLimiter;
pub use policy::{LimitClass, Subject, address_key, client_address};
