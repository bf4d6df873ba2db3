//! The WebSocket API's functions: the `$connect` REQUEST authorizer (single-use ticket from the
//! query string) and one handler for the routes `$connect`, `heartbeat`, `$disconnect` and
//! `$default` (route selection on `$request.body.action`).
//!
//! Answers to the client travel as the integration's response body (the routes have a
//! `$default` route response), so a heartbeat needs no `@connections` call.

mod authorizer;
mod frames;
mod handler;

pub use authorizer::{
    ConnectAuthorizerResponse, ConnectContext, authorize_connect, authorize_connect_with_metrics,
};
pub use frames::{ErrorFrame, HeartbeatAckFrame};
pub use handler::{Handler, handle};
