//! The session service's Lambda functions: the REST control plane (an axum router run by
//! `lambda_http`) and the HTTP API request authorizer. The binaries in `src/bin` only wire them.

pub mod caller_context;
pub mod http;
pub mod http_authorizer;
pub mod invoke;
pub mod metrics;
pub mod websocket;
pub mod wiring;
