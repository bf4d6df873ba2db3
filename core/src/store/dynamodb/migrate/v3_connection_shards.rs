//! Migration 3: connection entries move from 8 GSI1 shards to 16 (`WSCONN#<shard>` with the
//! shard FNV-1a of the session id mod 16, see `item::WS_CONNECTION_SHARDS`); every other item
//! of an older version is stamped version 3. Half the sessions keep their shard (`h mod 16 < 8`),
//! the others move 8 up. Readers query all 16 shards, so they find an entry in either place.

use aws_sdk_dynamodb::types::AttributeValue;

use super::super::TableSpec;
use super::super::item::{CONN_PREFIX, Item, ItemExt, key, n, s, ws_connection_entry};
use super::super::write::Write;
use super::{Migration, session_of};
use crate::store::StoreError;

/// See the module docs.
pub(super) struct ConnectionShards;

const VERSION: u32 = 3;

impl Migration for ConnectionShards {
    fn version(&self) -> u32 {
        VERSION
    }

    fn name(&self) -> &'static str {
        "connection entries move from 8 shards to 16"
    }

    fn pending(&self) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
        // Which shard an entry belongs in is a hash the scan cannot compute: every connection
        // item is read, and `write_for` decides.
        (
            "(attribute_not_exists(#schema_version) OR #schema_version < :target) \
             OR begins_with(#SK, :conn)",
            vec![(":target", n(VERSION)), (":conn", s(CONN_PREFIX))],
        )
    }

    fn write_for(&self, item: &Item) -> Result<Option<Write>, StoreError> {
        let key = key(item.string(TableSpec::PK)?, item.string(TableSpec::SK)?);
        let version = item.opt_number::<u32>("schema_version")?.unwrap_or(1);
        let is_connection = item.string(TableSpec::SK)?.starts_with(CONN_PREFIX);
        if is_connection {
            let session = session_of(item)?;
            let [(_, pk), (_, sk)] = ws_connection_entry(None, &session, item.string("id")?);
            let current = item.get(TableSpec::GSI1PK);
            if current == Some(&pk) && version >= VERSION {
                return Ok(None);
            }
            // Only while the entry is where it was read (or absent): a heartbeat's put since
            // wrote it under 16 shards, and a disconnect removed the item.
            let condition = match current {
                Some(_) => "attribute_exists(#PK) AND #GSI1PK = :old",
                None => "attribute_exists(#PK) AND attribute_not_exists(#GSI1PK)",
            };
            let mut write = Write::update(key, "SET #GSI1PK = :gsi1pk, #GSI1SK = :gsi1sk")
                .when(condition)
                .bind(":gsi1pk", pk)
                .bind(":gsi1sk", sk);
            if let Some(old) = current {
                write = write.bind(":old", old.clone());
            }
            return Ok(Some(write));
        }
        if version < VERSION {
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
