//! The domain model: sessions, simulators, WebSocket connections, connect tickets, leases and
//! idempotency records, with their validation and state machines.
//!
//! Nothing here knows about AWS, HTTP or gRPC; adapters translate at the edges.

mod connection;
mod heartbeat;
mod idempotency;
mod ids;
mod lease;
mod market;
mod page;
mod revocation;
mod session;
mod simulator;
mod ticket;
mod time;
mod transition;
pub mod validation;

pub use connection::{Connection, ConnectionQuality};
pub use heartbeat::{AdvicePolicy, Affinity, Heartbeat, ReconnectReason, advice};
pub use idempotency::{IdempotencyClaim, IdempotencyKey, RequestFingerprint, StoredResponse};
pub use ids::{ConnectionId, RegionName, SessionId, SimulatorId, TicketId, UserId};
pub use lease::{Lease, session_lease_name};
pub use market::{BookView, EventId, Level, decimal};
pub use page::{Cursor, Page, PageRequest};
pub use revocation::{Revocation, RevocationTarget, TokenId};
pub use session::{Metadata, NewSession, Session, SessionName, SessionStatus};
pub use simulator::{NewSimulator, Simulator, SimulatorHost, SimulatorStatus, Symbol};
pub use ticket::{Compression, Ticket, Transport};
pub use time::Timestamp;
pub use transition::TransitionError;
pub use validation::ValidationError;
