//! The DynamoDB adapter: one table, every state change a conditional write, quota changes in the
//! same transaction as the write they limit.
//!
//! DynamoDB deletes expired items lazily (up to days after their TTL), so every read here filters
//! on `expires_at` and every condition treats an expired item as absent. Counters of quotas may
//! still count an expired item; when a quota check fails, the expired items it counts are purged
//! (each with its own conditional transaction) and the write is tried once more.
//!
//! Layout: this file holds the client, its construction and the reads and checks every port
//! shares; each port's `impl` has its own file (`sessions`, `simulators`, `connections`,
//! `tickets`, `idempotency`, `leases`, `revocation`, `rate_limit`, each declaring the DynamoDB
//! actions of its methods, gathered in `iam`), with `event_budget` (the per-user event
//! counter), `transact` (transactions and their retries), `write` (one conditional write),
//! `item` (items and keys) and `schema` (the table) beside them.

mod connections;
mod event_budget;
mod fence;
mod home;
mod iam;
mod idempotency;
mod item;
mod leases;
pub mod migrate;
mod rate_limit;
mod region_beat;
mod revocation;
mod schema;
mod sessions;
mod simulators;
mod tickets;
mod transact;
mod write;

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;

pub use self::fence::{Fence, Fenced};
pub(super) use self::iam::iam_actions;
use self::item::{ItemExt as _, SESSION_SK, key, s, session_from, session_pk};
pub use self::schema::{TableSpec, create_table};
use self::write::{Write, WriteError, classify};
use super::StoreError;
use crate::clock::Clock;
use crate::component::Component;
use crate::config::StoreSettings;
use crate::domain::SessionId;
use crate::store::HomeFence;

/// A store in one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    clock: Arc<dyn Clock>,
    /// In a multi-region deployment, the region whose sessions alone this store writes.
    home: Option<HomeFence>,
}

/// The SDK's timeouts from the settings: without them a hung connection holds a call until
/// the function times out.
fn timeouts(settings: &StoreSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout_ms)
        .operation_attempt_timeout(settings.attempt_timeout_ms)
        .operation_timeout(settings.call_timeout_ms)
        .build()
}

/// The SDK's default HTTP client (hyper, rustls on aws-lc; plain HTTP too, for a local
/// endpoint) with its connection pool sized by the settings (`store.pool_*`): hyper's own
/// defaults keep every idle connection for 90 s.
fn http_client(settings: &StoreSettings) -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .pool_max_idle_per_host(
            usize::try_from(settings.pool_max_idle_per_host).unwrap_or(usize::MAX),
        )
        .pool_idle_timeout(settings.pool_idle_timeout_ms)
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https()
}

impl DynamoStore {
    /// A store in `table`, reached through `client`.
    pub fn new(client: Client, table: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.into(),
            clock,
            home: None,
        }
    }

    /// The store writing only sessions homed in `fence`'s region (`None`: single-region, no
    /// condition added).
    #[must_use]
    pub fn fenced_by(mut self, fence: Option<HomeFence>) -> Self {
        self.home = fence;
        self
    }

    /// A client from the environment's AWS configuration, pointed at `settings.endpoint` if
    /// set, with the settings' timeouts, whose calls name `component` in their user agent.
    pub async fn client_from_env(settings: &StoreSettings, component: Component) -> Client {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .app_name(component.app_name())
            .http_client(http_client(settings))
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
            .http_client(http_client(settings))
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

    /// Whether the session can take new simulators or connections now.
    async fn session_usable(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.usable_session(id).await?.is_some())
    }

    /// Session `id` if it is active and unexpired (a consistent read).
    async fn usable_session(
        &self,
        id: &SessionId,
    ) -> Result<Option<crate::domain::Session>, StoreError> {
        let now = self.clock.now();
        Ok(match self.get(key(session_pk(id), SESSION_SK)).await? {
            Some(item) => Some(session_from(&item)?).filter(|s| s.is_usable(now)),
            None => None,
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

/// The condition "this item exists and has not expired".
const LIVE: &str = "attribute_exists(#PK) AND #expires_at > :now";

/// Whether a single conditional write applied.
fn applied(result: Result<Option<item::Item>, WriteError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(WriteError::ConditionFailed) => Ok(false),
        Err(WriteError::Store(e)) => Err(e),
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

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB returned no attributes for an update that asked for them")]
struct MissingReturnValues;
