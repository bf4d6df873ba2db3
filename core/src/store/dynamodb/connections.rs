//! The DynamoDB adapter of [`ConnectionStore`]: one item per WebSocket connection
//! (`SESSION#<id>` / `CONN#<id>`), counted in the same transaction (on the session item; in a
//! multi-region deployment on the region's own counter item), and indexed by region and shard
//! in GSI1 for streamers looking for sessions to serve.

use crate::store::ports::{DELETE_ITEM, GET_ITEM, MethodActions, PUT_ITEM, QUERY, UPDATE_ITEM};
use std::collections::BTreeSet;

use async_trait::async_trait;

use super::item::{
    CONN_PREFIX, SESSION_SK, WS_CONNECTION_SHARDS, connection_count_key, connection_from,
    connection_item, connection_session_from, key, ms, n, s, session_pk, ws_connections_pk,
};
use super::write::Write;
use super::{DynamoStore, LIVE, TableSpec, applied, every_page, item};
use crate::domain::{Connection, ConnectionId, SessionId, SessionStatus, Timestamp};
use crate::store::home_fence::{is_own_connection, own_connection};
use crate::store::{ConnectionStore, HomeFence, Quota, StoreError};

impl DynamoStore {
    /// Where this region counts a session's connections: `None` for the session item (a
    /// single-region deployment), else this region's own counter item in the session's
    /// partition. In a multi-region deployment each region counts its connections apart: each
    /// counter is written by one region only (last writer wins never loses a slot), and a
    /// region admits connections to sessions homed elsewhere, whose item only the home writes.
    fn connection_counter(&self, session: &SessionId) -> Option<item::Item> {
        self.home
            .as_ref()
            .map(|fence| connection_count_key(session, fence.this()))
    }

    /// Whether `connection` is this region's (see [`is_own_connection`]).
    fn is_own(&self, connection: &Connection) -> bool {
        is_own_connection(self.home.as_ref(), connection)
    }

    /// The write that counts `connection` under `max`: on the session item, conditional on the
    /// session being usable; or on this region's counter item, after reading the session (the
    /// replica's copy, which a condition in the transaction would see no fresher), `None` if
    /// it is not usable.
    async fn count_connection(
        &self,
        connection: &Connection,
        max: u32,
        now: Timestamp,
    ) -> Result<Option<Write>, StoreError> {
        let increment = "SET #connections = if_not_exists(#connections, :zero) + :one";
        let under_max = "(attribute_not_exists(#connections) OR #connections < :max)";
        let session = &connection.session_id;
        let count = match self.connection_counter(session) {
            None => Write::update(key(session_pk(session), SESSION_SK), increment)
                .when(&format!(
                    "#status = :active AND #expires_at > :now AND {under_max}"
                ))
                .bind(":active", s(SessionStatus::Active.as_str()))
                .bind(":now", ms(now)),
            Some(counter) => {
                let Some(usable) = self.usable_session(session).await? else {
                    return Ok(None);
                };
                // Kept as long as the session: it counts nothing after.
                Write::update(counter, &format!("{increment}, #ttl = :ttl"))
                    .when(under_max)
                    .bind(":ttl", n(usable.expires_at.unix_seconds_ceil()))
            }
        };
        Ok(Some(
            count
                .bind(":zero", n(0))
                .bind(":one", n(1))
                .bind(":max", n(max)),
        ))
    }

    /// One shard's unexpired WebSocket connection entries of this region in GSI1 (one per
    /// connection, only `session_id` projected), every page read. GSI reads are eventually
    /// consistent (they cannot be otherwise).
    async fn query_connection_shard(
        &self,
        shard: u32,
        now: Timestamp,
    ) -> Result<Vec<item::Item>, StoreError> {
        let region = self.home.as_ref().and_then(HomeFence::key_region);
        every_page(
            self.client
                .query()
                .table_name(self.table.as_ref())
                .index_name(TableSpec::GSI1)
                .key_condition_expression("#GSI1PK = :shard")
                // Expired but not yet deleted by TTL: absent, as everywhere.
                .filter_expression("#expires_at > :now")
                .projection_expression("#session_id")
                .expression_attribute_names("#GSI1PK", TableSpec::GSI1PK)
                .expression_attribute_names("#expires_at", "expires_at")
                .expression_attribute_names("#session_id", "session_id")
                .expression_attribute_values(":shard", s(ws_connections_pk(region, shard)))
                .expression_attribute_values(":now", ms(now)),
        )
        .await
    }

    /// Deletes the session's expired connection records of this region, releasing their quota
    /// slots.
    async fn purge_expired_connections(&self, session: &SessionId) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut released = 0;
        for item in self.query_prefix(session_pk(session), CONN_PREFIX).await? {
            let connection = connection_from(&item)?;
            if connection.is_expired(now)
                && self.is_own(&connection)
                && self.delete_connection_record(&connection).await?
            {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Deletes one connection record of this region at its version and releases its slot;
    /// `false` if the record changed or vanished meanwhile.
    async fn delete_connection_record(&self, c: &Connection) -> Result<bool, StoreError> {
        let delete = Write::delete(key(
            session_pk(&c.session_id),
            format!("{CONN_PREFIX}{}", c.id),
        ))
        .when("#version = :version")
        .bind(":version", n(c.version));
        let counter = self
            .connection_counter(&c.session_id)
            .unwrap_or_else(|| key(session_pk(&c.session_id), SESSION_SK));
        let release = Write::update(counter, "SET #connections = #connections - :one")
            .when("attribute_exists(#PK) AND #connections > :zero")
            .bind(":one", n(1))
            .bind(":zero", n(0));
        match self.transact(vec![delete.clone(), release]).await? {
            Ok(()) => Ok(true),
            Err(failure) if failure.failed.first() == Some(&true) => Ok(false),
            // The counter is gone (or already zero: a record counted before this region kept
            // its own count): the record alone goes.
            Err(_) => applied(self.write(delete).await),
        }
    }
}

/// The DynamoDB actions of each method of [`ConnectionStore`] here (checked against the calls in this
/// file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] = &[
    // A full quota reads the session and purges expired connections.
    (
        "put_connection",
        &[PUT_ITEM, UPDATE_ITEM, GET_ITEM, QUERY, DELETE_ITEM],
    ),
    ("get_connection", &[GET_ITEM]),
    ("list_connections", &[QUERY]),
    ("update_connection", &[PUT_ITEM, GET_ITEM]),
    ("delete_connection", &[GET_ITEM, DELETE_ITEM, UPDATE_ITEM]),
    ("sessions_with_connections", &[QUERY]),
];

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(
        &self,
        connection: &Connection,
        max_per_session: u32,
    ) -> Result<(), StoreError> {
        let connection = &own_connection(self.home.as_ref(), connection);
        let not_active = || StoreError::SessionNotActive {
            id: connection.session_id.to_string(),
        };
        for attempt in 0..2 {
            let now = self.clock.now();
            let Some(count) = self
                .count_connection(connection, max_per_session, now)
                .await?
            else {
                return Err(not_active());
            };
            let writes = vec![
                Write::put(connection_item(connection)).when("attribute_not_exists(#PK)"),
                count,
            ];
            match self.transact(writes).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.at(0) => {
                    return Err(StoreError::AlreadyExists {
                        entity: "connection",
                        id: connection.id.to_string(),
                    });
                }
                Err(_) if !self.session_usable(&connection.session_id).await? => {
                    return Err(not_active());
                }
                Err(_) => {
                    if attempt == 0
                        && self
                            .purge_expired_connections(&connection.session_id)
                            .await?
                            > 0
                    {
                        continue;
                    }
                    break;
                }
            }
        }
        Err(StoreError::QuotaExceeded {
            quota: Quota::ConnectionsPerSession,
            limit: max_per_session,
        })
    }

    async fn get_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError> {
        let now = self.clock.now();
        let item = self
            .get(key(session_pk(session), format!("{CONN_PREFIX}{id}")))
            .await?;
        let connection = item.as_ref().map(connection_from).transpose()?;
        Ok(connection.filter(|c| !c.is_expired(now) && self.is_own(c)))
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        let now = self.clock.now();
        let items = self.query_prefix(session_pk(session), CONN_PREFIX).await?;
        let mut connections = Vec::with_capacity(items.len());
        for item in &items {
            let connection = connection_from(item)?;
            if !connection.is_expired(now) && self.is_own(&connection) {
                connections.push(connection);
            }
        }
        Ok(connections)
    }

    async fn update_connection(
        &self,
        previous: &Connection,
        next: &Connection,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let change = Write::put(connection_item(next))
            .when(&format!("{LIVE} AND #version = :version"))
            .bind(":now", ms(now))
            .bind(":version", n(previous.version));
        if applied(self.write(change).await)? {
            return Ok(());
        }
        let conn_key = key(
            session_pk(&previous.session_id),
            format!("{CONN_PREFIX}{}", previous.id),
        );
        Err(self
            .missing_or_conflict("connection", previous.id.as_str(), conn_key)
            .await)
    }

    async fn delete_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<bool, StoreError> {
        let conn_key = key(session_pk(session), format!("{CONN_PREFIX}{id}"));
        // Read, then delete at the version read: a concurrent change makes us read again.
        for _ in 0..8 {
            let Some(item) = self.get(conn_key.clone()).await? else {
                return Ok(false);
            };
            let connection = connection_from(&item)?;
            // Another region's connection is not ours to remove: absent, as it reads here.
            if !self.is_own(&connection) {
                return Ok(false);
            }
            if self.delete_connection_record(&connection).await? {
                return Ok(!connection.is_expired(self.clock.now()));
            }
        }
        Err(StoreError::Conflict {
            entity: "connection",
            id: id.to_string(),
        })
    }

    async fn sessions_with_connections(&self) -> Result<Vec<SessionId>, StoreError> {
        let now = self.clock.now();
        // A session's connections are all in its one shard, but it may have several of them.
        // All 16 shards: they include the 8 of the layout before schema version 3, so entries
        // migration 3 has not moved yet are found too (see `item::WS_CONNECTION_SHARDS`).
        let mut sessions = BTreeSet::new();
        for shard in 0..WS_CONNECTION_SHARDS {
            for item in &self.query_connection_shard(shard, now).await? {
                sessions.insert(connection_session_from(item)?);
            }
        }
        Ok(sessions.into_iter().collect())
    }
}
