//! Pushing to browsers connected through API Gateway WebSocket: the streamer posts each message
//! to a connection with API Gateway's `@connections` API.
//!
//! Layout: [`ConnectionsApi`] (`connections_api.rs`) makes one call well: `PostToConnection`
//! or `DeleteConnection`, its failures sorted into the classes a caller acts on
//! ([`PostError`]), and retries of the transient ones; [`messages`] packs the hub's events into
//! as few messages as API Gateway's limits allow; [`deflate`] compresses a message once for
//! every connection granted `deflate`; [`Pusher`] takes the leases of sessions with
//! connections and feeds each connection from the hub.

mod connections_api;
pub mod deflate;
pub mod messages;
mod pusher;

pub use connections_api::{ConnectionsApi, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, PostError};
pub use pusher::{PushSettings, Pusher};
