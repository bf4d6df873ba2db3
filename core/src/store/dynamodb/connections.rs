//! The DynamoDB adapter of [`ConnectionStore`]: one item per WebSocket connection
//! (`SESSION#<id>` / `CONN#<id>`), counted on the session item in the same transaction, and
//! indexed by shard in GSI1 for streamers looking for sessions to serve.

use crate::store::ports::{DELETE_ITEM, GET_ITEM, MethodActions, PUT_ITEM, QUERY, UPDATE_ITEM};
use std::collections::BTreeSet;

use async_trait::async_trait;

use super::item::{
    CONN_PREFIX, SESSION_SK, WS_CONNECTION_SHARDS, connection_from, connection_item,
    connection_session_from, key, ms, n, s, session_pk, ws_connections_pk,
};
use super::write::Write;
use super::{DynamoStore, LIVE, TableSpec, applied, every_page, item};
use crate::domain::{Connection, ConnectionId, SessionId, SessionStatus, Timestamp};
use crate::store::{ConnectionStore, Quota, StoreError};

impl DynamoStore {
    /// One shard's unexpired WebSocket connection entries in GSI1 (one per connection, only
    /// `session_id` projected), every page read. GSI reads are eventually consistent (they
    /// cannot be otherwise).
    async fn query_connection_shard(
        &self,
        shard: u32,
        now: Timestamp,
    ) -> Result<Vec<item::Item>, StoreError> {
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
                .expression_attribute_values(":shard", s(ws_connections_pk(shard)))
                .expression_attribute_values(":now", ms(now)),
        )
        .await
    }

    /// Deletes the session's expired connection records, releasing their quota slots.
    async fn purge_expired_connections(&self, session: &SessionId) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut released = 0;
        for item in self.query_prefix(session_pk(session), CONN_PREFIX).await? {
            let connection = connection_from(&item)?;
            if connection.is_expired(now) && self.delete_connection_record(&connection).await? {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Deletes one connection record at its version and releases its slot; `false` if the
    /// record changed or vanished meanwhile.
    async fn delete_connection_record(&self, c: &Connection) -> Result<bool, StoreError> {
        let delete = Write::delete(key(
            session_pk(&c.session_id),
            format!("{CONN_PREFIX}{}", c.id),
        ))
        .when("#version = :version")
        .bind(":version", n(c.version));
        let release = self.homed_here(
            Write::update(
                key(session_pk(&c.session_id), SESSION_SK),
                "SET #connections = #connections - :one",
            )
            .when("attribute_exists(#PK) AND #connections > :zero")
            .bind(":one", n(1))
            .bind(":zero", n(0)),
        );
        match self.transact(vec![delete.clone(), release]).await? {
            Ok(()) => Ok(true),
            Err(c) if c.failed.first() == Some(&true) => Ok(false),
            // Homed elsewhere: the record stays (its slot is counted there) until the home
            // purges it once expired.
            Err(_) if let Some(elsewhere) = self.not_home(&c.session_id).await? => Err(elsewhere),
            // The session item is gone (or its counter already zero): the record alone goes.
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
        for attempt in 0..2 {
            let now = self.clock.now();
            let writes = vec![
                Write::put(connection_item(connection)).when("attribute_not_exists(#PK)"),
                self.homed_here(
                    Write::update(
                        key(session_pk(&connection.session_id), SESSION_SK),
                        "SET #connections = if_not_exists(#connections, :zero) + :one",
                    )
                    .when(
                        "#status = :active AND #expires_at > :now \
                     AND (attribute_not_exists(#connections) OR #connections < :max)",
                    )
                    .bind(":active", s(SessionStatus::Active.as_str()))
                    .bind(":now", ms(now))
                    .bind(":zero", n(0))
                    .bind(":one", n(1))
                    .bind(":max", n(max_per_session)),
                ),
            ];
            match self.transact(writes).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.at(0) => {
                    return Err(StoreError::AlreadyExists {
                        entity: "connection",
                        id: connection.id.to_string(),
                    });
                }
                Err(_) if let Some(elsewhere) = self.not_home(&connection.session_id).await? => {
                    return Err(elsewhere);
                }
                Err(_) if !self.session_usable(&connection.session_id).await? => {
                    return Err(StoreError::SessionNotActive {
                        id: connection.session_id.to_string(),
                    });
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
        Ok(connection.filter(|c| !c.is_expired(now)))
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        let now = self.clock.now();
        let items = self.query_prefix(session_pk(session), CONN_PREFIX).await?;
        let mut connections = Vec::with_capacity(items.len());
        for item in &items {
            let connection = connection_from(item)?;
            if !connection.is_expired(now) {
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
