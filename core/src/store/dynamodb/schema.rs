//! The table's shape, declared once: `create_table` builds it, and the infra test compares
//! `infra/template.yaml` with [`TableSpec::cloudformation`].
//!
//! Layout (single table, see docs/architecture.md):
//!
//! | item | PK | SK | GSI1PK / GSI1SK |
//! | --- | --- | --- | --- |
//! | session | `SESSION#<session_id>` | `SESSION` | `OWNER#<user>` / `<session_id>` |
//! | simulator | `SESSION#<session_id>` | `SIM#<simulator_id>` | |
//! | connection | `SESSION#<session_id>` | `CONN#<connection_id>` | `WSCONN#[<region>#]<shard>` / `<session_id>#<connection_id>` |
//! | a region's connection count (multi-region) | `SESSION#<session_id>` | `WSCOUNT#<region>` | |
//! | owner's counters | `OWNER#<user>` | `QUOTA` (`QUOTA#<region>` outside the primary region) | |
//! | consumed ticket | `TICKET#<jti>` | `TICKET` | |
//! | idempotency key | `IDEM#<user>` | `KEY#<key>` | |
//! | lease | `LEASE#<name>` | `LEASE` | |
//! | a region's beat / fence (multi-region) | `REGION#<region>` | `BEAT` / `FENCE` | |
//!
//! GSI1 is overloaded: sessions by owner (`OWNER#…`), and every WebSocket connection under its
//! session's shard (`WSCONN#0`…`WSCONN#15`, see `item::WS_CONNECTION_SHARDS`; a region other
//! than the primary's under `WSCONN#<region>#…`) for streamers to find the sessions that have
//! connections. The prefixes keep the two apart.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_json::json;

use crate::store::StoreError;

/// Names of the table's key attributes, index and TTL attribute.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec;

impl TableSpec {
    /// Partition key of the table.
    pub const PK: &'static str = "PK";
    /// Sort key of the table.
    pub const SK: &'static str = "SK";
    /// The sessions-by-owner index.
    pub const GSI1: &'static str = "GSI1";
    /// Partition key of GSI1 (`OWNER#<user>`).
    pub const GSI1PK: &'static str = "GSI1PK";
    /// Sort key of GSI1 (the session id, which sorts by creation time).
    pub const GSI1SK: &'static str = "GSI1SK";
    /// Epoch seconds after which DynamoDB may delete an item.
    pub const TTL: &'static str = "ttl";

    /// The table's key schema, attribute definitions, index and TTL as CloudFormation
    /// `AWS::DynamoDB::Table` properties, for comparison with `infra/template.yaml`.
    pub fn cloudformation() -> serde_json::Value {
        json!({
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                { "AttributeName": Self::PK, "AttributeType": "S" },
                { "AttributeName": Self::SK, "AttributeType": "S" },
                { "AttributeName": Self::GSI1PK, "AttributeType": "S" },
                { "AttributeName": Self::GSI1SK, "AttributeType": "S" },
            ],
            "KeySchema": [
                { "AttributeName": Self::PK, "KeyType": "HASH" },
                { "AttributeName": Self::SK, "KeyType": "RANGE" },
            ],
            "GlobalSecondaryIndexes": [{
                "IndexName": Self::GSI1,
                "KeySchema": [
                    { "AttributeName": Self::GSI1PK, "KeyType": "HASH" },
                    { "AttributeName": Self::GSI1SK, "KeyType": "RANGE" },
                ],
                "Projection": { "ProjectionType": "ALL" },
            }],
            "TimeToLiveSpecification": { "AttributeName": Self::TTL, "Enabled": true },
        })
    }
}

fn build_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(build_error)
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_error)
}

/// Creates the table as [`TableSpec`] declares it, unless it exists; waits until it is usable.
///
/// # Errors
/// The endpoint refused or could not be reached.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    if client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok()
    {
        return Ok(());
    }
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(TableSpec::GSI1)
        .key_schema(key(TableSpec::GSI1PK, KeyType::Hash)?)
        .key_schema(key(TableSpec::GSI1SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(build_error)?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(TableSpec::PK)?)
        .attribute_definitions(string_attribute(TableSpec::SK)?)
        .attribute_definitions(string_attribute(TableSpec::GSI1PK)?)
        .attribute_definitions(string_attribute(TableSpec::GSI1SK)?)
        .key_schema(key(TableSpec::PK, KeyType::Hash)?)
        .key_schema(key(TableSpec::SK, KeyType::Range)?)
        .global_secondary_indexes(gsi)
        .send()
        .await;
    if let Err(err) = created {
        // Another process may have created it between our describe and create.
        let service = err.into_service_error();
        if !service.is_resource_in_use_exception() {
            return Err(StoreError::Backend(Box::new(service)));
        }
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(std::time::Duration::from_secs(120))
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TableSpec::TTL)
                .enabled(true)
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await
        .map_err(|e| StoreError::Backend(Box::new(e.into_service_error())))?;
    Ok(())
}
