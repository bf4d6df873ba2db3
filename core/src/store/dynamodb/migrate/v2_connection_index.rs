//! Migration 2: connection items written before the `WSCONN#<shard>` GSI1 entry existed get it
//! (without it, streamers never see their sessions until the next heartbeat rewrites them);
//! every other item of version 1 is stamped version 2.

use aws_sdk_dynamodb::types::AttributeValue;

use super::super::TableSpec;
use super::super::item::{CONN_PREFIX, Item, ItemExt, key, n, s, ws_connection_entry};
use super::super::write::Write;
use super::{Migration, session_of};
use crate::store::StoreError;

/// See the module docs.
pub(super) struct ConnectionIndex;

const VERSION: u32 = 2;

impl Migration for ConnectionIndex {
    fn version(&self) -> u32 {
        VERSION
    }

    fn name(&self) -> &'static str {
        "connection items get their WSCONN# index entry"
    }

    fn pending(&self) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
        (
            "(attribute_not_exists(#schema_version) OR #schema_version < :target) \
             OR (begins_with(#SK, :conn) AND attribute_not_exists(#GSI1PK))",
            vec![(":target", n(VERSION)), (":conn", s(CONN_PREFIX))],
        )
    }

    fn write_for(&self, item: &Item) -> Result<Option<Write>, StoreError> {
        let key = key(item.string(TableSpec::PK)?, item.string(TableSpec::SK)?);
        let is_connection = item.string(TableSpec::SK)?.starts_with(CONN_PREFIX);
        if is_connection && !item.contains_key(TableSpec::GSI1PK) {
            let session = session_of(item)?;
            let connection = item.string("id")?;
            let [(_, pk), (_, sk)] = ws_connection_entry(None, &session, connection);
            // Only while it still lacks the entry: a heartbeat's put since brought it up.
            return Ok(Some(
                Write::update(key, "SET #GSI1PK = :gsi1pk, #GSI1SK = :gsi1sk")
                    .when("attribute_exists(#PK) AND attribute_not_exists(#GSI1PK)")
                    .bind(":gsi1pk", pk)
                    .bind(":gsi1sk", sk),
            ));
        }
        if item.opt_number::<u32>("schema_version")?.unwrap_or(1) < VERSION {
            return Ok(Some(
                Write::update(key, "")
                    .when(
                        "attribute_exists(#PK) AND \
                         (attribute_not_exists(#schema_version) OR #schema_version < :target)",
                    )
                    .bind(":target", n(VERSION)),
            ));
        }
        Ok(None)
    }
}
