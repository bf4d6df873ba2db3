//! What the cache holds: hot items under their keys, each with the stamp that orders its
//! versions, so that an older copy never replaces a newer one in either tier.

use serde::{Deserialize, Serialize};

use crate::domain::{
    Connection, ConnectionId, Lease, Session, SessionId, Simulator, SimulatorId, Timestamp,
};

/// Prefix of every key: a change of encoding bumps it, so a shared tier never decodes an older
/// process's entries as its own.
const PREFIX: &str = "session-service:cache:v1";

/// The key of session `id`.
pub(super) fn session(id: &SessionId) -> String {
    format!("{PREFIX}:session:{id}")
}

/// The key of simulator `id` of `session`.
pub(super) fn simulator(session: &SessionId, id: &SimulatorId) -> String {
    format!("{PREFIX}:simulator:{session}:{id}")
}

/// The key of the list of `session`'s simulators.
pub(super) fn simulators(session: &SessionId) -> String {
    format!("{PREFIX}:simulators:{session}")
}

/// The key of lease `name`.
pub(super) fn lease(name: &str) -> String {
    format!("{PREFIX}:lease:{name}")
}

/// The key of connection `id` of `session`.
pub(super) fn connection(session: &SessionId, id: &ConnectionId) -> String {
    format!("{PREFIX}:connection:{session}:{id}")
}

/// A cached item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Value {
    /// A session.
    Session(Session),
    /// A simulator.
    Simulator(Simulator),
    /// A session's simulators, oldest first.
    Simulators(Vec<Simulator>),
    /// A lease.
    Lease(Lease),
    /// A connection: in process only (its heartbeat bookkeeping, `last_seq`, is not part of
    /// its serialised form, and only the process serving its heartbeats reads it often).
    #[serde(skip)]
    Connection(Connection),
}

impl Value {
    /// Orders versions of the same item: compared as text, fixed width, so Redis' script
    /// compares them the same way. A list has none (empty): it is only ever replaced whole.
    pub(super) fn stamp(&self) -> String {
        match self {
            Self::Session(s) => format!("{:020}", s.version),
            Self::Simulator(s) => format!("{:020}", s.version),
            Self::Connection(c) => format!("{:020}", c.version),
            // A lease has no version: its fencing token grows when it changes hands, a renewal
            // moves its expiry on, and draining only ever turns on under the same token.
            Self::Lease(l) => format!(
                "{:020}.{:020}.{}",
                l.token,
                l.expires_at.unix_millis().max(0),
                u8::from(l.draining)
            ),
            Self::Simulators(_) => String::new(),
        }
    }

    /// Whether it may be served at `now`: the store hides an item past its expiry, and so does
    /// the cache.
    pub(super) fn is_live(&self, now: Timestamp) -> bool {
        match self {
            Self::Session(s) => !s.is_expired(now),
            Self::Simulator(s) => s.expires_at > now,
            Self::Simulators(list) => list.iter().all(|s| s.expires_at > now),
            Self::Lease(l) => !l.is_expired(now),
            Self::Connection(c) => !c.is_expired(now),
        }
    }

    /// Whether the shared tier may hold it.
    pub(super) fn is_shared(&self) -> bool {
        !matches!(self, Self::Connection(_))
    }
}

/// A type the cache holds, converted to and from [`Value`].
pub(super) trait Cached: Sized + Clone {
    /// It, as a cached value.
    fn into_value(self) -> Value;
    /// The item `value` holds, if of this type.
    fn from_value(value: Value) -> Option<Self>;
}

macro_rules! cached {
    ($type:ty, $variant:ident) => {
        impl Cached for $type {
            fn into_value(self) -> Value {
                Value::$variant(self)
            }
            fn from_value(value: Value) -> Option<Self> {
                match value {
                    Value::$variant(item) => Some(item),
                    _ => None,
                }
            }
        }
    };
}

cached!(Session, Session);
cached!(Simulator, Simulator);
cached!(Vec<Simulator>, Simulators);
cached!(Lease, Lease);
cached!(Connection, Connection);
