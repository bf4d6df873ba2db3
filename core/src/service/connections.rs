//! WebSocket connections: admitting a `$connect` by its single-use ticket, recording the
//! connection under the session's quota, heartbeats (liveness, quality, reconnect advice), and
//! removal on `$disconnect`.

use tracing::{info, instrument, warn};

use std::sync::Arc;

use super::{ServiceError, ServiceParts};
use crate::clock::Clock;
use crate::config::WebSocketSettings;
use crate::domain::{
    AdvicePolicy, Affinity, Compression, Connection, ConnectionId, ConnectionQuality, EventId,
    Heartbeat, Lease, ReconnectReason, SessionId, TicketId, Timestamp, UserId, advice,
    session_lease_name,
};
use crate::store::ports::{Port, PortUse};
use crate::store::{ConnectionStore, LeaseStore, StoreError};

/// A `$connect` its ticket admits: the session and user the connection will belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The session.
    pub session_id: SessionId,
    /// The user the ticket was issued to.
    pub user: UserId,
    /// The consumed ticket.
    pub ticket_id: TicketId,
    /// How the connection's pushes are encoded, as the ticket granted.
    pub compression: Compression,
}

/// Why a ticket did not admit a connection (all answered 403 by API Gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketRefusal {
    /// Not a ticket of this service, or malformed.
    #[error("invalid")]
    Invalid,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// Already used once.
    #[error("already_used")]
    AlreadyUsed,
    /// Issued for the other transport.
    #[error("wrong_transport")]
    WrongTransport,
    /// A spent SSE ticket's resume chain has run its whole life (`streaming.resume_chain_secs`
    /// past the ticket's expiry): a fresh ticket is needed.
    #[error("chain_ended")]
    ChainEnded,
}

/// The answer to a heartbeat, sent back on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// The heartbeat's counter.
    pub seq: u64,
    /// The server's clock, to be echoed as `last_server_time` by the next heartbeat.
    pub server_time: Timestamp,
    /// The connection's quality as measured so far.
    pub quality: ConnectionQuality,
    /// Whether and why the client should reconnect.
    pub advice: Option<ReconnectReason>,
    /// What a reconnect resumes from: the last event id the client reported.
    pub last_event_id: Option<String>,
    /// When the connection counts as dead without another heartbeat.
    pub expires_at: Timestamp,
    /// The streamer that serves the session (holds its lease), as last seen; `None` until one
    /// has been seen.
    pub served_by: Option<String>,
    /// `true` for a repeated or out-of-order heartbeat, which changed nothing.
    pub stale: bool,
}

/// The WebSocket routes' use cases: record a connection the authorizer admitted, heartbeats,
/// removal.
#[derive(Debug, Clone)]
pub struct ConnectionService {
    connections: Arc<dyn ConnectionStore>,
    /// Read only: the lease says which streamer serves the session, and whether it drains.
    leases: Arc<dyn LeaseStore>,
    clock: Arc<dyn Clock>,
    /// Connections one session may have.
    connections_per_session: u32,
    websocket: WebSocketSettings,
}

impl ConnectionService {
    /// The store methods the WebSocket routes call (with the rate limiter's: the ws-handler's
    /// IAM policy).
    pub const PORTS: &[PortUse] = &[
        PortUse {
            port: Port::Connections,
            methods: &[
                "put_connection",
                "get_connection",
                "update_connection",
                "delete_connection",
            ],
        },
        PortUse {
            port: Port::Leases,
            methods: &["get_lease"],
        },
    ];

    /// The WebSocket routes' use cases over `parts`.
    pub fn new(parts: &ServiceParts) -> Self {
        Self {
            connections: parts.store.clone(),
            leases: parts.store.clone(),
            clock: parts.clock.clone(),
            connections_per_session: parts.limits.connections_per_session,
            websocket: parts.websocket.clone(),
        }
    }

    /// Records a connection admitted by `admission`, under the session's connection quota;
    /// `resume_from` is the last event id its URL names (a reconnect).
    ///
    /// # Errors
    /// `QuotaExceeded`, `SessionClosed`, or the store failed.
    #[instrument(skip_all, fields(connection_id = %id, session_id = %admission.session_id))]
    pub async fn open_connection(
        &self,
        id: &ConnectionId,
        admission: &Admission,
        resume_from: Option<EventId>,
    ) -> Result<Connection, ServiceError> {
        let now = self.clock.now();
        let connection = Connection {
            id: id.clone(),
            session_id: admission.session_id.clone(),
            owner: admission.user.clone(),
            connected_at: now,
            last_seen_at: now,
            expires_at: now.plus(self.websocket.heartbeat_timeout_secs),
            // Where the push starts: the URL's last event id (a reconnect), until heartbeats
            // report where the client is.
            last_event_id: resume_from.map(|id| id.to_string()),
            quality: ConnectionQuality::default(),
            // The first heartbeat records the lease holder.
            served_by: None,
            compression: admission.compression,
            // The store names its own region.
            region: None,
            version: 1,
        };
        self.connections
            .put_connection(&connection, self.connections_per_session)
            .await?;
        info!("connection opened");
        Ok(connection)
    }

    /// Records a heartbeat: liveness, quality, the client's last event id, the streamer that
    /// holds the session's lease; and advises (`draining` and `session_moved` from that lease).
    ///
    /// # Errors
    /// `Invalid` naming the field when a field is out of its range ([`Heartbeat::validate`]);
    /// `NotFound` if the connection is gone (expired or disconnected).
    #[instrument(skip_all, fields(connection_id = %id, session_id = %session, seq = beat.seq))]
    pub async fn heartbeat(
        &self,
        session: &SessionId,
        id: &ConnectionId,
        beat: &Heartbeat,
    ) -> Result<HeartbeatAck, ServiceError> {
        // Checked before anything is read or written: a bad heartbeat leaves the record as it is.
        beat.validate().map_err(ServiceError::Invalid)?;
        let policy = self.websocket.advice_policy();
        let lease = self.session_lease(session).await;
        // A concurrent heartbeat of the same connection may win the write; re-read and re-apply.
        let mut lost = None;
        for _ in 0..3 {
            let now = self.clock.now();
            let current = self
                .connections
                .get_connection(session, id)
                .await?
                .ok_or_else(|| ServiceError::not_found("connection", id))?;
            let affinity = Affinity::at_heartbeat(current.served_by.as_deref(), lease.as_ref());
            let Some(quality) = current.quality.after(beat, now) else {
                // Nothing is recorded, so a move it advises is advised again by the next one.
                return Ok(ack(
                    &policy, &current, beat.seq, now, false, &affinity, true,
                ));
            };
            let missed_now = quality.missed_heartbeats - current.quality.missed_heartbeats;
            let next = Connection {
                last_seen_at: now,
                expires_at: now.plus(self.websocket.heartbeat_timeout_secs),
                // The parsed id, re-spelled: never the client's own text.
                last_event_id: current
                    .position_after(beat.last_event_id.map(|id| id.to_string()).as_deref()),
                quality,
                served_by: affinity.served_by.clone(),
                version: current.version + 1,
                ..current.clone()
            };
            match self.connections.update_connection(&current, &next).await {
                Ok(()) => {
                    let poor = quality.is_poor(&policy, missed_now);
                    return Ok(ack(&policy, &next, beat.seq, now, poor, &affinity, false));
                }
                Err(conflict @ StoreError::Conflict { .. }) => lost = Some(conflict),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal {
            context: "heartbeat lost three write races".to_owned(),
            source: lost.map(|conflict| Box::new(conflict) as _),
        })
    }

    /// The session's lease, if held. A failure to read it is logged and taken as no lease: the
    /// heartbeat is then recorded and answered without lease advice rather than failed.
    async fn session_lease(&self, session: &SessionId) -> Option<Lease> {
        match self.leases.get_lease(&session_lease_name(session)).await {
            Ok(lease) => lease,
            Err(e) => {
                warn!(error = %e, "cannot read the session's lease; no draining or move advice");
                None
            }
        }
    }

    /// Removes a connection; `false` if it was already gone. Idempotent.
    ///
    /// # Errors
    /// The store failed.
    #[instrument(skip_all, fields(connection_id = %id, session_id = %session))]
    pub async fn close_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<bool, ServiceError> {
        let removed = self.connections.delete_connection(session, id).await?;
        info!(removed, "connection closed");
        Ok(removed)
    }
}

/// The acknowledgement of heartbeat `seq` for `connection` as recorded, advising by `policy`
/// and the session's `affinity`.
fn ack(
    policy: &AdvicePolicy,
    connection: &Connection,
    seq: u64,
    now: Timestamp,
    quality_poor: bool,
    affinity: &Affinity,
    stale: bool,
) -> HeartbeatAck {
    let advice = advice(
        policy,
        connection.connected_at,
        now,
        quality_poor,
        affinity.draining,
        affinity.session_moved,
    );
    HeartbeatAck {
        seq,
        server_time: now,
        quality: connection.quality,
        advice,
        last_event_id: connection.last_event_id.clone(),
        expires_at: connection.expires_at,
        served_by: affinity.served_by.clone(),
        stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(connected_at: Timestamp) -> Connection {
        Connection {
            connected_at,
            last_seen_at: connected_at,
            expires_at: connected_at.plus(std::time::Duration::from_secs(60)),
            served_by: Some("streamer-a".to_owned()),
            ..Connection::sample()
        }
    }

    fn affinity(served_by: &str, draining: bool, session_moved: bool) -> Affinity {
        Affinity {
            served_by: Some(served_by.to_owned()),
            draining,
            session_moved,
        }
    }

    #[test]
    fn an_ack_advises_from_the_lease_before_age_and_quality_and_names_the_holder() {
        let policy = AdvicePolicy::default();
        let start = Timestamp::from_unix_millis(0);
        let old = Timestamp::from_unix_millis(policy.max_age_ms);
        let c = connection(start);

        let moved = ack(
            &policy,
            &c,
            2,
            old,
            true,
            &affinity("streamer-b", false, true),
            false,
        );
        let draining = ack(
            &policy,
            &c,
            2,
            old,
            true,
            &affinity("streamer-b", true, true),
            false,
        );
        let calm = ack(
            &policy,
            &c,
            2,
            old,
            false,
            &affinity("streamer-a", false, false),
            false,
        );

        assert_eq!(moved.advice, Some(ReconnectReason::SessionMoved));
        assert_eq!(moved.served_by.as_deref(), Some("streamer-b"));
        assert_eq!(draining.advice, Some(ReconnectReason::Draining));
        assert_eq!(calm.advice, Some(ReconnectReason::ConnectionAge));
        assert_eq!(calm.served_by.as_deref(), Some("streamer-a"));
    }

    #[test]
    fn an_ack_without_lease_advice_keeps_the_quality_advice() {
        let policy = AdvicePolicy::default();
        let start = Timestamp::from_unix_millis(0);
        let young = Timestamp::from_unix_millis(60_000);

        let poor = ack(
            &policy,
            &connection(start),
            2,
            young,
            true,
            &Affinity::default(),
            false,
        );
        let fine = ack(
            &policy,
            &connection(start),
            2,
            young,
            false,
            &Affinity::default(),
            false,
        );

        assert_eq!(poor.advice, Some(ReconnectReason::PoorQuality));
        assert_eq!(fine.advice, None);
        assert_eq!(fine.served_by, None);
    }
}
