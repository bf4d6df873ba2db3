//! The session service's Lambda functions: the REST control plane (an axum router run by
//! `lambda_http`) and the HTTP API request authorizer, and `session-admin`'s migrations
//! (`admin`). The binaries in `src/bin` only wire them.

pub mod admin;
pub mod caller_context;
pub mod http;
pub mod http_authorizer;
pub mod invoke;
pub mod live;
pub mod metrics;
pub mod websocket;
pub mod wiring;
