//! The WebSocket API's functions: the `$connect` REQUEST authorizer (single-use ticket from the
//! query string) and one handler for the routes `$connect`, `heartbeat`, `$disconnect` and
//! `$default` (route selection on `$request.body.action`).
//!
//! Answers to the client travel as the integration's response body (the routes have a
//! `$default` route response), so a heartbeat needs no `@connections` call.
//!
//! Layout: `frames` (what is sent back; their JSON Schemas are docs/asyncapi.json's), `outcome`
//! (every error and the status or `error` frame it is answered with, in one table), `handler`
//! (the routes), `connect_authorizer` (`$connect`).

mod connect_authorizer;
mod frames;
mod handler;
mod outcome;

pub use connect_authorizer::{
    ConnectAuthorizerResponse, ConnectContext, authorize_connect, authorize_connect_with_metrics,
};
pub use frames::{AdviceFrame, ErrorFrame, HeartbeatAckFrame, ResumeFrame};
pub use handler::{Handler, handle};
pub use outcome::{Answer, ErrorCode, WsError};
