//! The DynamoDB adapter: one table, every state change a conditional write, quota changes in the
//! same transaction as the write they limit.
//!
//! DynamoDB deletes expired items lazily (up to days after their TTL), so every read here filters
//! on `expires_at` and every condition treats an expired item as absent. Counters of quotas may
//! still count an expired item; when a quota check fails, the expired items it counts are purged
//! (each with its own conditional transaction) and the write is tried once more.

mod event_budget;
mod item;
mod rate_limit;
mod revocation;
mod schema;
mod write;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;
use backon::{ExponentialBuilder, Retryable as _};

use self::item::{
    CONN_PREFIX, ItemExt as _, QUOTA_SK, SESSION_SK, SIM_PREFIX, WS_CONNECTION_SHARDS,
    connection_from, connection_item, connection_session_from, key, lease_from, ms, n, owner_pk,
    response_attributes, response_from, s, session_from, session_item, session_pk, simulator_from,
    simulator_item, ws_connections_pk,
};
pub use self::schema::{TableSpec, create_table};
use self::write::{Write, WriteError, backend, classify};
use super::memory::IDEMPOTENCY_LOCK;
use super::{
    ConnectionStore, IdempotencyStore, LeaseStore, Quota, SessionStore, SimulatorQuotas,
    SimulatorStore, StoreError, TicketStore,
};
use crate::clock::Clock;
use crate::component::Component;
use crate::config::StoreSettings;
use crate::domain::{
    Connection, ConnectionId, Cursor, EventId, IdempotencyClaim, IdempotencyKey, Lease, Page,
    PageRequest, RequestFingerprint, Session, SessionId, SessionStatus, Simulator, SimulatorId,
    StoredResponse, TicketId, Timestamp, UserId,
};

/// Lapsed leases are kept this long so fencing tokens keep growing across holders.
const LEASE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a transaction ended when it did not apply.
#[derive(Debug)]
struct Cancelled {
    /// Per item, whether its condition failed.
    failed: Vec<bool>,
}

/// A store in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    clock: Arc<dyn Clock>,
}

/// The SDK's timeouts from the settings: without them a hung connection holds a call until
/// the function times out.
fn timeouts(settings: &StoreSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(settings.attempt_timeout())
        .operation_timeout(settings.call_timeout())
        .build()
}

impl DynamoStore {
    /// A store in `table`, reached through `client`.
    pub fn new(client: Client, table: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.into(),
            clock,
        }
    }

    /// A client from the environment's AWS configuration, pointed at `settings.endpoint` if
    /// set, with the settings' timeouts, whose calls name `component` in their user agent.
    pub async fn client_from_env(settings: &StoreSettings, component: Component) -> Client {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .app_name(component.app_name())
            .timeout_config(timeouts(settings));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Client::new(&loader.load().await)
    }

    /// A client for a DynamoDB-API server on this machine (moto's server, DynamoDB Local) at
    /// `endpoint`, which accepts any credentials: fixed dummy ones and region are used. Its
    /// calls name `component` in their user agent, if given (tests' own calls name none).
    pub fn local_client(
        endpoint: &str,
        settings: &StoreSettings,
        component: Option<Component>,
    ) -> Client {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "local"))
            .endpoint_url(endpoint)
            .timeout_config(timeouts(settings));
        config.set_app_name(component.map(Component::app_name));
        Client::from_conf(config.build())
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn write(&self, write: Write) -> Result<Option<item::Item>, WriteError> {
        write.send(&self.client, &self.table).await
    }

    /// Runs a transaction; `Err(Cancelled)` says which conditions failed. Conflicts with
    /// concurrent transactions are retried with jittered backoff, as AWS advises.
    ///
    /// Retries and the `ClientRequestToken` (DynamoDB applies the calls of one token at most once
    /// within 10 minutes and answers later ones with the first one's success):
    /// - the SDK's own retries (a timed-out attempt, a 5xx, throttling) resend the same request,
    ///   token included: the attempt's outcome is unknown, and it may have landed;
    /// - this function's retries (a `TransactionConflict` cancellation, or
    ///   `TransactionInProgressException`, which DynamoDB answers while an earlier call with the
    ///   same token is still running) are the same logical transaction, whose earlier attempts
    ///   may be ambiguous (one timed out in the SDK and may still be landing): they keep the
    ///   token, so that at most one of them applies;
    /// - every call of this function is a new logical transaction with a new token: a caller
    ///   that tries again (after a purge freed a slot, after reading a newer version) does so
    ///   after a definite outcome — the conditions failed — and on state that has changed.
    ///
    /// A token is honoured only by DynamoDB (moto ignores it), and only for 10 minutes; the
    /// items also carry their write's id, so a retry whose conditions fail against this very
    /// transaction's landed items counts as applied (see `write`).
    async fn transact(&self, writes: Vec<Write>) -> Result<Result<(), Cancelled>, StoreError> {
        let items = writes
            .iter()
            .map(|w| w.to_transact_item(&self.table))
            .collect::<Result<Vec<_>, _>>()?;
        let token = ulid::Ulid::new().to_string();
        let attempt = || async {
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(&token)
                .send()
                .await;
            match sent {
                Ok(_) => Ok(Ok(())),
                Err(err) => cancellation(err, &writes),
            }
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(5))
                    .with_max_delay(Duration::from_millis(200))
                    .with_max_times(8)
                    .with_jitter(),
            )
            .when(|e| matches!(e, TxError::Conflict | TxError::InProgress))
            .await
            .map_err(|e| match e {
                TxError::Conflict | TxError::InProgress => {
                    StoreError::Unavailable(Box::new(TransactionConflict))
                }
                TxError::Store(e) => e,
            })
    }

    async fn get(&self, key: item::Item) -> Result<Option<item::Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.item)
    }

    /// Every item of a partition whose sort key starts with `prefix`, read consistently.
    async fn query_prefix(&self, pk: String, prefix: &str) -> Result<Vec<item::Item>, StoreError> {
        every_page(
            self.client
                .query()
                .table_name(self.table.as_ref())
                .key_condition_expression("#PK = :pk AND begins_with(#SK, :prefix)")
                .expression_attribute_names("#PK", TableSpec::PK)
                .expression_attribute_names("#SK", TableSpec::SK)
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true),
        )
        .await
    }

    /// The owner's sessions (expired ones included) with ids below `before`, newest first.
    async fn query_owner_sessions(
        &self,
        owner: &UserId,
        before: Option<&SessionId>,
        limit: i32,
    ) -> Result<(Vec<Session>, bool), StoreError> {
        let condition = if before.is_some() {
            "#GSI1PK = :owner AND #GSI1SK < :before"
        } else {
            "#GSI1PK = :owner"
        };
        let mut query = self
            .client
            .query()
            .table_name(self.table.as_ref())
            .index_name(TableSpec::GSI1)
            .key_condition_expression(condition)
            .expression_attribute_names("#GSI1PK", TableSpec::GSI1PK)
            .expression_attribute_values(":owner", s(owner_pk(owner)))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(before) = before {
            query = query
                .expression_attribute_names("#GSI1SK", TableSpec::GSI1SK)
                .expression_attribute_values(":before", s(before.as_str()));
        }
        let out = query.send().await.map_err(classify)?;
        let more = out.last_evaluated_key.is_some();
        let sessions = out
            .items
            .unwrap_or_default()
            .iter()
            .map(session_from)
            .collect::<Result<_, _>>()?;
        Ok((sessions, more))
    }

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

    /// Closes the owner's active sessions that have expired, releasing their quota slots.
    /// Returns how many were released.
    async fn purge_expired_sessions(&self, owner: &UserId) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut released = 0;
        let mut before: Option<SessionId> = None;
        loop {
            let (sessions, more) = self
                .query_owner_sessions(owner, before.as_ref(), 100)
                .await?;
            for session in &sessions {
                if session.status == SessionStatus::Active && session.is_expired(now) {
                    // An update, not a put: the item's counters (`event_rate` above all) stay.
                    let close = Write::update(
                        key(session_pk(&session.id), SESSION_SK),
                        "SET #status = :closed, #closed_at = :closed_at, #version = :next_version",
                    )
                    .when("#version = :version AND #status = :active")
                    .bind(":closed", s(SessionStatus::Closed.as_str()))
                    .bind(":closed_at", ms(session.expires_at))
                    .bind(":next_version", n(session.version + 1))
                    .bind(":version", n(session.version))
                    .bind(":active", s(SessionStatus::Active.as_str()));
                    let writes = vec![close, release_session_slot(owner)];
                    if self.transact(writes).await?.is_ok() {
                        released += 1;
                    }
                }
            }
            before = sessions.last().map(|s| s.id.clone());
            if !more || before.is_none() {
                return Ok(released);
            }
        }
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
        let release = Write::update(
            key(session_pk(&c.session_id), SESSION_SK),
            "SET #connections = #connections - :one",
        )
        .when("attribute_exists(#PK) AND #connections > :zero")
        .bind(":one", n(1))
        .bind(":zero", n(0));
        match self.transact(vec![delete.clone(), release]).await? {
            Ok(()) => Ok(true),
            Err(c) if c.failed.first() == Some(&true) => Ok(false),
            // The session item is gone (or its counter already zero): the record alone goes.
            Err(_) => applied(self.write(delete).await),
        }
    }

    /// Whether the session can take new simulators or connections now.
    async fn session_usable(&self, id: &SessionId) -> Result<bool, StoreError> {
        let now = self.clock.now();
        Ok(match self.get(key(session_pk(id), SESSION_SK)).await? {
            Some(item) => session_from(&item)?.is_usable(now),
            None => false,
        })
    }

    /// After a failed conditional change: `NotFound` if the item is gone or expired, else
    /// `Conflict`.
    async fn missing_or_conflict(
        &self,
        entity: &'static str,
        id: &str,
        item_key: item::Item,
    ) -> StoreError {
        let now = self.clock.now().unix_millis();
        match self.get(item_key).await {
            Ok(Some(item)) if item.number::<i64>("expires_at").is_ok_and(|e| e > now) => {
                StoreError::Conflict {
                    entity,
                    id: id.to_owned(),
                }
            }
            Ok(_) => StoreError::NotFound {
                entity,
                id: id.to_owned(),
            },
            Err(e) => e,
        }
    }
}

/// Frees one of the owner's open-session slots.
fn release_session_slot(owner: &UserId) -> Write {
    Write::update(
        key(owner_pk(owner), QUOTA_SK),
        "SET #open_sessions = #open_sessions - :one",
    )
    .when("#open_sessions > :zero")
    .bind(":one", n(1))
    .bind(":zero", n(0))
}

/// The condition "this item exists and has not expired".
const LIVE: &str = "attribute_exists(#PK) AND #expires_at > :now";

#[derive(Debug)]
enum TxError {
    /// Cancelled by a concurrent transaction on one of the items: nothing applied.
    Conflict,
    /// An earlier call with the same token is still running: its outcome is unknown.
    InProgress,
    Store(StoreError),
}

#[derive(Debug, thiserror::Error)]
#[error("transaction kept conflicting with concurrent transactions")]
struct TransactionConflict;

/// Cancellation reasons that mean "try again later" (the item's partition was throttled).
const THROTTLED_REASONS: [&str; 5] = [
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
];

/// How a failed `TransactWriteItems` call of `writes` ended: applied after all (its conditions
/// failed against its own landed items), cancelled by conditions, to be retried, or failed.
fn cancellation<R>(
    err: SdkError<TransactWriteItemsError, R>,
    writes: &[Write],
) -> Result<Result<(), Cancelled>, TxError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = &err {
        match service.err() {
            TransactWriteItemsError::TransactionCanceledException(e) => {
                let reasons = e.cancellation_reasons();
                let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
                let failed: Vec<bool> = codes
                    .iter()
                    .map(|c| *c == "ConditionalCheckFailed")
                    .collect();
                // Atomic: one item holding this transaction's write means all of them landed.
                let landed = reasons
                    .iter()
                    .zip(writes)
                    .zip(&failed)
                    .any(|((reason, write), failed)| *failed && write.landed(reason.item()));
                if landed {
                    return Ok(Ok(()));
                }
                if failed.iter().any(|f| *f) {
                    return Ok(Err(Cancelled { failed }));
                }
                if codes.contains(&"TransactionConflict") {
                    return Err(TxError::Conflict);
                }
                if codes.iter().any(|c| THROTTLED_REASONS.contains(c)) {
                    return Err(TxError::Store(StoreError::Unavailable(Box::new(err))));
                }
            }
            TransactWriteItemsError::TransactionInProgressException(_) => {
                return Err(TxError::InProgress);
            }
            _ => {}
        }
    }
    Err(TxError::Store(classify(err)))
}

impl Cancelled {
    fn at(&self, index: usize) -> bool {
        self.failed.get(index).copied().unwrap_or(false)
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &Session, max_open: u32) -> Result<(), StoreError> {
        for attempt in 0..2 {
            let writes = vec![
                Write::put(session_item(session)).when("attribute_not_exists(#PK)"),
                Write::update(
                    key(owner_pk(&session.owner), QUOTA_SK),
                    "SET #open_sessions = if_not_exists(#open_sessions, :zero) + :one",
                )
                .when("attribute_not_exists(#open_sessions) OR #open_sessions < :max")
                .bind(":zero", n(0))
                .bind(":one", n(1))
                .bind(":max", n(max_open)),
            ];
            match self.transact(writes).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.at(0) => {
                    return Err(StoreError::AlreadyExists {
                        entity: "session",
                        id: session.id.to_string(),
                    });
                }
                Err(_) => {
                    if attempt == 0 && self.purge_expired_sessions(&session.owner).await? > 0 {
                        continue;
                    }
                    break;
                }
            }
        }
        Err(StoreError::QuotaExceeded {
            quota: Quota::SessionsPerUser,
            limit: max_open,
        })
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        let Some(item) = self.get(key(session_pk(id), SESSION_SK)).await? else {
            return Ok(None);
        };
        let session = session_from(&item)?;
        Ok((!session.is_expired(now)).then_some(session))
    }

    async fn list_sessions(
        &self,
        owner: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        let now = self.clock.now();
        let wanted = page.limit as usize + 1;
        let mut items = Vec::with_capacity(wanted);
        let mut before = page.cursor.as_ref().map(|c| c.last_id().clone());
        // Expired sessions are filtered here, so a query may return fewer live ones than asked:
        // keep reading until the page is full or the index is exhausted.
        loop {
            let (sessions, more) = self
                .query_owner_sessions(owner, before.as_ref(), wanted as i32)
                .await?;
            before = sessions.last().map(|s| s.id.clone());
            items.extend(sessions.into_iter().filter(|s| !s.is_expired(now)));
            if items.len() >= wanted || !more || before.is_none() {
                break;
            }
        }
        items.truncate(wanted);
        let next_cursor = if items.len() > page.limit as usize {
            items.truncate(page.limit as usize);
            items.last().map(|s| Cursor::after(&s.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn update_session(&self, previous: &Session, next: &Session) -> Result<(), StoreError> {
        let now = self.clock.now();
        // The counters (`active_simulators`, `connections`) live on the session item, so a
        // change sets the session's own attributes; it never puts the whole item.
        let mut set = vec![
            "#status = :status",
            "#version = :next_version",
            "#expires_at = :expires_at",
            "#ttl = :ttl",
        ];
        let mut remove = Vec::new();
        let mut values = vec![
            (":status", s(next.status.as_str())),
            (":next_version", n(next.version)),
            (":expires_at", ms(next.expires_at)),
            (":ttl", n(next.expires_at.unix_seconds_ceil())),
        ];
        let optional = [
            ("#closed_at", ":closed_at", next.closed_at.map(ms)),
            ("#name", ":name", next.name.as_ref().map(|v| s(v.as_str()))),
            (
                "#metadata",
                ":metadata",
                next.metadata.as_ref().map(|m| s(m.to_json())),
            ),
        ];
        let mut assignments = Vec::new();
        for (attribute, placeholder, value) in optional {
            match value {
                Some(value) => {
                    assignments.push(format!("{attribute} = {placeholder}"));
                    values.push((placeholder, value));
                }
                None => remove.push(attribute),
            }
        }
        set.extend(assignments.iter().map(String::as_str));
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression = format!("{expression} REMOVE {}", remove.join(", "));
        }
        let mut change = Write::update(key(session_pk(&previous.id), SESSION_SK), &expression)
            .when(&format!("{LIVE} AND #version = :version"))
            .bind(":now", ms(now))
            .bind(":version", n(previous.version));
        for (placeholder, value) in values {
            change = change.bind(placeholder, value);
        }
        let releases_slot =
            previous.status == SessionStatus::Active && next.status != SessionStatus::Active;
        let applied = if releases_slot {
            self.transact(vec![change, release_session_slot(&previous.owner)])
                .await?
                .is_ok()
        } else {
            applied(self.write(change).await)?
        };
        if applied {
            return Ok(());
        }
        Err(self
            .missing_or_conflict(
                "session",
                previous.id.as_str(),
                key(session_pk(&previous.id), SESSION_SK),
            )
            .await)
    }
}

/// Whether a single conditional write applied.
fn applied(result: Result<Option<item::Item>, WriteError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(WriteError::ConditionFailed) => Ok(false),
        Err(WriteError::Store(e)) => Err(e),
    }
}

#[async_trait]
impl SimulatorStore for DynamoStore {
    async fn create_simulator(
        &self,
        simulator: &Simulator,
        owner: &UserId,
        quotas: SimulatorQuotas,
    ) -> Result<(), StoreError> {
        let SimulatorQuotas {
            max_active,
            max_events_per_second: budget,
        } = quotas;
        let rate = simulator.events_per_second;
        let over_budget = StoreError::QuotaExceeded {
            quota: Quota::EventsPerSecondPerUser,
            limit: budget,
        };
        if rate > budget {
            return Err(over_budget);
        }
        for attempt in 0..2 {
            let now = self.clock.now();
            let writes = vec![
                Write::put(simulator_item(simulator)).when("attribute_not_exists(#PK)"),
                Write::update(
                    key(session_pk(&simulator.session_id), SESSION_SK),
                    "SET #active_simulators = if_not_exists(#active_simulators, :zero) + :one, \
                     #event_rate = if_not_exists(#event_rate, :zero) + :rate",
                )
                .when(
                    "#status = :active AND #expires_at > :now \
                     AND (attribute_not_exists(#active_simulators) OR #active_simulators < :max)",
                )
                .bind(":active", s(SessionStatus::Active.as_str()))
                .bind(":now", ms(now))
                .bind(":zero", n(0))
                .bind(":one", n(1))
                .bind(":rate", n(rate))
                .bind(":max", n(max_active)),
                event_budget::claim(owner, rate, budget),
            ];
            match self.transact(writes).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.at(0) => {
                    return Err(StoreError::AlreadyExists {
                        entity: "simulator",
                        id: simulator.id.to_string(),
                    });
                }
                Err(c) if c.at(1) || !c.at(2) => {
                    if !self.session_usable(&simulator.session_id).await? {
                        return Err(StoreError::SessionNotActive {
                            id: simulator.session_id.to_string(),
                        });
                    }
                    return Err(StoreError::QuotaExceeded {
                        quota: Quota::SimulatorsPerSession,
                        limit: max_active,
                    });
                }
                // Over the budget: sessions that ended with simulators counted may hold it.
                Err(_) => {
                    if attempt == 0 && self.retire_ended_sessions(owner).await? > 0 {
                        continue;
                    }
                    break;
                }
            }
        }
        Err(over_budget)
    }

    async fn get_simulator(
        &self,
        session: &SessionId,
        id: &SimulatorId,
    ) -> Result<Option<Simulator>, StoreError> {
        let now = self.clock.now();
        let item = self
            .get(key(session_pk(session), format!("{SIM_PREFIX}{id}")))
            .await?;
        let simulator = item.as_ref().map(simulator_from).transpose()?;
        Ok(simulator.filter(|s| s.expires_at > now))
    }

    async fn list_simulators(&self, session: &SessionId) -> Result<Vec<Simulator>, StoreError> {
        let now = self.clock.now();
        let items = self.query_prefix(session_pk(session), SIM_PREFIX).await?;
        let mut simulators = Vec::with_capacity(items.len());
        for item in &items {
            let simulator = simulator_from(item)?;
            if simulator.expires_at > now {
                simulators.push(simulator);
            }
        }
        Ok(simulators)
    }

    async fn update_simulator(
        &self,
        previous: &Simulator,
        next: &Simulator,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let change = Write::put(simulator_item(next))
            .when(&format!("{LIVE} AND #version = :version"))
            .bind(":now", ms(now))
            .bind(":version", n(previous.version));
        let applied = if !previous.status.is_terminal() && next.status.is_terminal() {
            self.finish_simulator(change, previous).await?
        } else {
            applied(self.write(change).await)?
        };
        if applied {
            return Ok(());
        }
        let sim_key = key(
            session_pk(&previous.session_id),
            format!("{SIM_PREFIX}{}", previous.id),
        );
        Err(self
            .missing_or_conflict("simulator", previous.id.as_str(), sim_key)
            .await)
    }
}

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
        let mut sessions = BTreeSet::new();
        for shard in 0..WS_CONNECTION_SHARDS {
            for item in &self.query_connection_shard(shard, now).await? {
                sessions.insert(connection_session_from(item)?);
            }
        }
        Ok(sessions.into_iter().collect())
    }
}

fn ticket_key(id: &TicketId) -> item::Item {
    key(format!("TICKET#{id}"), "TICKET")
}

/// Sets a ticket's release: where its stream may be reopened from (`resume_epoch`,
/// `resume_sequence`) and until when (`resumable_until`). Resuming removes the three.
const SET_RELEASE: &str =
    "SET #resume_epoch = :epoch, #resume_sequence = :sequence, #resumable_until = :until";

#[async_trait]
impl TicketStore for DynamoStore {
    async fn consume_ticket(&self, id: &TicketId, expires_at: Timestamp) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut record = ticket_key(id);
        record.extend([
            ("expires_at".to_owned(), ms(expires_at)),
            (TableSpec::TTL.to_owned(), n(expires_at.unix_seconds_ceil())),
        ]);
        let consume = Write::put(record)
            .when("attribute_not_exists(#PK) OR #expires_at <= :now")
            .bind(":now", ms(now));
        if applied(self.write(consume).await)? {
            Ok(())
        } else {
            Err(StoreError::TicketAlreadyUsed)
        }
    }

    async fn release_ticket(
        &self,
        id: &TicketId,
        last_delivered: EventId,
        resumable_until: Timestamp,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let release = |expression: &str, condition: &str| {
            Write::update(ticket_key(id), expression)
                .when(&format!("{LIVE} AND {condition}"))
                .bind(":now", ms(now))
                .bind(":epoch", n(last_delivered.epoch))
                .bind(":sequence", n(last_delivered.sequence))
                .bind(":until", ms(resumable_until))
        };
        // An update expression has no max(): the record's expiry becomes
        // max(expires_at, resumable_until) through two disjoint conditional writes, of which at
        // most one applies; `expires_at` never shrinks, so a live record meets one of them.
        let extend = release(
            &format!("{SET_RELEASE}, #expires_at = :until, #ttl = :ttl"),
            "#expires_at < :until",
        )
        .bind(":ttl", n(resumable_until.unix_seconds_ceil()));
        if applied(self.write(extend).await)? {
            return Ok(());
        }
        let keep = release(SET_RELEASE, "#expires_at >= :until");
        if applied(self.write(keep).await)? {
            return Ok(());
        }
        Err(StoreError::NotFound {
            entity: "ticket",
            id: id.to_string(),
        })
    }

    async fn resume_ticket(&self, id: &TicketId, from: EventId) -> Result<(), StoreError> {
        let now = self.clock.now();
        let resume = Write::update(
            ticket_key(id),
            "REMOVE #resume_epoch, #resume_sequence, #resumable_until",
        )
        .when(
            "#expires_at > :now AND #resumable_until > :now \
             AND #resume_epoch = :epoch AND #resume_sequence >= :sequence",
        )
        .bind(":now", ms(now))
        .bind(":epoch", n(from.epoch))
        .bind(":sequence", n(from.sequence));
        if applied(self.write(resume).await)? {
            Ok(())
        } else {
            Err(StoreError::TicketAlreadyUsed)
        }
    }
}

/// Every item `query` matches, over all its pages (a filtered page may be empty and still not
/// be the last).
async fn every_page(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
) -> Result<Vec<item::Item>, StoreError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = query
            .clone()
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(classify)?;
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

fn idempotency_key(owner: &UserId, key_: &IdempotencyKey) -> item::Item {
    key(format!("IDEM#{owner}"), format!("KEY#{}", key_.as_str()))
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim_idempotency(
        &self,
        owner: &UserId,
        key_: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        ttl: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        for _ in 0..4 {
            let now = self.clock.now();
            let expires_at = now.plus(ttl);
            let mut record = idempotency_key(owner, key_);
            record.extend([
                ("fingerprint".to_owned(), s(fingerprint.as_str())),
                ("state".to_owned(), s("pending")),
                ("locked_until".to_owned(), ms(now.plus(IDEMPOTENCY_LOCK))),
                ("expires_at".to_owned(), ms(expires_at)),
                (TableSpec::TTL.to_owned(), n(expires_at.unix_seconds_ceil())),
            ]);
            let claim = Write::put(record)
                .when(
                    "attribute_not_exists(#PK) OR #expires_at <= :now \
                     OR (#fingerprint = :fingerprint AND #state = :pending AND #locked_until <= :now)",
                )
                .bind(":now", ms(now))
                .bind(":fingerprint", s(fingerprint.as_str()))
                .bind(":pending", s("pending"));
            if applied(self.write(claim).await)? {
                return Ok(IdempotencyClaim::Claimed);
            }
            let Some(existing) = self.get(idempotency_key(owner, key_)).await? else {
                continue; // expired and deleted meanwhile: claim again
            };
            if existing.timestamp("expires_at")? <= now {
                continue;
            }
            if existing.string("fingerprint")? != fingerprint.as_str() {
                return Ok(IdempotencyClaim::Mismatch);
            }
            if existing.string("state")? == "done" {
                return Ok(IdempotencyClaim::Completed(response_from(&existing)?));
            }
            if existing.timestamp("locked_until")? > now {
                return Ok(IdempotencyClaim::InProgress);
            }
        }
        Err(StoreError::Conflict {
            entity: "idempotency key",
            id: key_.as_str().to_owned(),
        })
    }

    async fn complete_idempotency(
        &self,
        owner: &UserId,
        key_: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut complete = Write::update(
            idempotency_key(owner, key_),
            "SET #state = :done, #response_status = :response_status, \
             #response_headers = :response_headers, #response_body = :response_body",
        )
        .when(&format!(
            "{LIVE} AND #fingerprint = :fingerprint AND #state = :pending"
        ))
        .bind(":now", ms(now))
        .bind(":done", s("done"))
        .bind(":pending", s("pending"))
        .bind(":fingerprint", s(fingerprint.as_str()));
        for (name, value) in response_attributes(response) {
            complete = complete.bind(&format!(":{name}"), value);
        }
        if applied(self.write(complete).await)? {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                entity: "idempotency key",
                id: key_.as_str().to_owned(),
            })
        }
    }

    async fn abandon_idempotency(
        &self,
        owner: &UserId,
        key_: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<(), StoreError> {
        let abandon = Write::delete(idempotency_key(owner, key_))
            .when("#fingerprint = :fingerprint AND #state = :pending")
            .bind(":fingerprint", s(fingerprint.as_str()))
            .bind(":pending", s("pending"));
        // Nothing to abandon (already completed or taken over) is fine.
        applied(self.write(abandon).await).map(|_| ())
    }
}

fn lease_key(name: &str) -> item::Item {
    key(format!("LEASE#{name}"), "LEASE")
}

#[async_trait]
impl LeaseStore for DynamoStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        for _ in 0..4 {
            let now = self.clock.now();
            let expires_at = now.plus(ttl);
            let ttl_seconds = n(expires_at.plus(LEASE_RETENTION).unix_seconds_ceil());
            // Free or lapsed: take it with the next fencing token.
            let take = Write::update(
                lease_key(name),
                "SET #name = :name, #owner = :owner, #expires_at = :expires_at, #ttl = :ttl, \
                 #draining = :false, #token = if_not_exists(#token, :zero) + :one",
            )
            .when("attribute_not_exists(#PK) OR #expires_at <= :now")
            .bind(":name", s(name))
            .bind(":owner", s(owner))
            .bind(":expires_at", ms(expires_at))
            .bind(":ttl", ttl_seconds.clone())
            .bind(":zero", n(0))
            .bind(":one", n(1))
            .bind(":false", AttributeValue::Bool(false))
            .bind(":now", ms(now));
            match self.write(take).await {
                Ok(Some(item)) => return lease_from(&item),
                Ok(None) => return Err(backend(MissingReturnValues)),
                Err(WriteError::Store(e)) => return Err(e),
                Err(WriteError::ConditionFailed) => {}
            }
            // Already ours and live: extend it, same token (acquiring clears draining).
            let extend = Write::update(
                lease_key(name),
                "SET #expires_at = :expires_at, #ttl = :ttl, #draining = :false",
            )
            .when("#owner = :owner AND #expires_at > :now")
            .bind(":false", AttributeValue::Bool(false))
            .bind(":owner", s(owner))
            .bind(":expires_at", ms(expires_at))
            .bind(":ttl", ttl_seconds)
            .bind(":now", ms(now));
            match self.write(extend).await {
                Ok(Some(item)) => return lease_from(&item),
                Ok(None) => return Err(backend(MissingReturnValues)),
                Err(WriteError::Store(e)) => return Err(e),
                Err(WriteError::ConditionFailed) => {}
            }
            if let Some(item) = self.get(lease_key(name)).await? {
                let held = lease_from(&item)?;
                if !held.is_expired(self.clock.now()) && held.owner != owner {
                    return Err(StoreError::LeaseHeld {
                        name: name.to_owned(),
                        owner: held.owner,
                        expires_at: held.expires_at,
                    });
                }
            }
            // It lapsed or changed between our writes and the read: try again.
        }
        Err(StoreError::Conflict {
            entity: "lease",
            id: name.to_owned(),
        })
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let expires_at = self.clock.now().plus(ttl);
        let renew = Write::update(
            lease_key(&lease.name),
            "SET #expires_at = :expires_at, #ttl = :ttl",
        )
        .when("#owner = :owner AND #token = :token")
        .bind(":owner", s(&lease.owner))
        .bind(":token", n(lease.token))
        .bind(":expires_at", ms(expires_at))
        .bind(
            ":ttl",
            n(expires_at.plus(LEASE_RETENTION).unix_seconds_ceil()),
        );
        match self.write(renew).await {
            Ok(Some(item)) => lease_from(&item),
            Ok(None) => Err(backend(MissingReturnValues)),
            Err(WriteError::ConditionFailed) => Err(StoreError::LeaseLost {
                name: lease.name.clone(),
            }),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    async fn mark_draining(&self, lease: &Lease) -> Result<Lease, StoreError> {
        // Only while live, unlike a renewal: a lapsed lease serves nobody, so nothing drains.
        let mark = Write::update(lease_key(&lease.name), "SET #draining = :true")
            .when("#owner = :owner AND #token = :token AND #expires_at > :now")
            .bind(":owner", s(&lease.owner))
            .bind(":token", n(lease.token))
            .bind(":true", AttributeValue::Bool(true))
            .bind(":now", ms(self.clock.now()));
        match self.write(mark).await {
            Ok(Some(item)) => lease_from(&item),
            Ok(None) => Err(backend(MissingReturnValues)),
            Err(WriteError::ConditionFailed) => Err(StoreError::LeaseLost {
                name: lease.name.clone(),
            }),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        // Lapse it rather than delete it, so the next holder's token is still higher.
        let release = Write::update(lease_key(&lease.name), "SET #expires_at = :now")
            .when("#owner = :owner AND #token = :token")
            .bind(":owner", s(&lease.owner))
            .bind(":token", n(lease.token))
            .bind(":now", ms(self.clock.now()));
        applied(self.write(release).await).map(|_| ())
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let now = self.clock.now();
        let lease = self
            .get(lease_key(name))
            .await?
            .as_ref()
            .map(lease_from)
            .transpose()?;
        Ok(lease.filter(|l| !l.is_expired(now)))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB returned no attributes for an update that asked for them")]
struct MissingReturnValues;

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;

    use super::*;

    fn cancelled(codes: &[&str]) -> SdkError<TransactWriteItemsError, ()> {
        let mut e = TransactionCanceledException::builder().meta(
            ErrorMetadata::builder()
                .code("TransactionCanceledException")
                .build(),
        );
        for code in codes {
            e = e.cancellation_reasons(CancellationReason::builder().code(*code).build());
        }
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(e.build()),
            (),
        )
    }

    fn writes() -> Vec<Write> {
        vec![
            Write::put(key("A", "A")).when("attribute_not_exists(#PK)"),
            Write::put(key("B", "B")).when("attribute_not_exists(#PK)"),
        ]
    }

    #[test]
    fn a_transaction_cancelled_by_throttling_is_unavailable() {
        for reason in ["ThrottlingError", "ProvisionedThroughputExceeded"] {
            let outcome = cancellation(cancelled(&["None", reason]), &writes());
            assert!(
                matches!(&outcome, Err(TxError::Store(e)) if e.is_transient()),
                "{reason}: {outcome:?}"
            );
        }
    }

    #[test]
    fn conflicts_and_calls_in_progress_are_retried_and_conditions_are_not() {
        let conflict = cancellation(cancelled(&["TransactionConflict", "None"]), &writes());
        let condition = cancellation(cancelled(&["ConditionalCheckFailed", "None"]), &writes());
        let in_progress = cancellation(
            SdkError::service_error(
                TransactWriteItemsError::TransactionInProgressException(
                    aws_sdk_dynamodb::types::error::TransactionInProgressException::builder()
                        .build(),
                ),
                (),
            ),
            &writes(),
        );

        assert!(matches!(conflict, Err(TxError::Conflict)), "{conflict:?}");
        assert!(
            matches!(in_progress, Err(TxError::InProgress)),
            "{in_progress:?}"
        );
        assert!(
            matches!(&condition, Ok(Err(c)) if c.at(0) && !c.at(1)),
            "{condition:?}"
        );
    }
}
