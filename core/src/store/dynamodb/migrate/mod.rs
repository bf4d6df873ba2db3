//! Versioned, idempotent, resumable data migrations of the table, run by `session-admin`.
//!
//! Progress lives in one item, `META#migrations` / `META`: the last applied version and, for the
//! migration under way, the key its scan reached (checkpointed after every page, so a runner
//! stopped anywhere resumes there). Only the holder of the `migrations` lease runs, and every
//! checkpoint is fenced by the lease's token, so two runners never both write progress.
//! Layout: the runner here, the lease in `lease`, one file per migration (`v2_connection_index`,
//! `v3_connection_shards`).

mod lease;
mod v2_connection_index;
mod v3_connection_shards;

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use self::lease::MigrationLease;
use super::item::{Item, ItemExt, key, n, s};
use super::write::{SCHEMA_VERSION, Write, WriteError, classify};
use super::{DynamoStore, TableSpec, applied};
use crate::component::Component;
use crate::config::StoreSettings;
use crate::domain::SessionId;
use crate::store::StoreError;

/// One data migration: brings every item it selects to `version`.
trait Migration: Send + Sync {
    /// The schema version items have once it ran.
    fn version(&self) -> u32;
    /// What it does, for progress lines.
    fn name(&self) -> &'static str;
    /// The scan filter selecting the items it has still to change (with its values).
    fn pending(&self) -> (&'static str, Vec<(&'static str, AttributeValue)>);
    /// The conditional write that brings `item` to [`Self::version`]; `None` if it is there.
    fn write_for(&self, item: &Item) -> Result<Option<Write>, StoreError>;
}

/// Every migration, in version order.
fn migrations() -> Vec<Box<dyn Migration>> {
    vec![
        Box::new(v2_connection_index::ConnectionIndex),
        Box::new(v3_connection_shards::ConnectionShards),
    ]
}

/// The session a connection item belongs to.
fn session_of(item: &Item) -> Result<SessionId, StoreError> {
    let session = item.string("session_id")?;
    SessionId::parse("session_id", session)
        .map_err(|_| StoreError::Backend(Box::new(BadSessionId(session.to_owned()))))
}

/// A connection item whose `session_id` is not a session id.
#[derive(Debug, thiserror::Error)]
#[error("connection item has a malformed session_id {0:?}")]
struct BadSessionId(String);

const META_PK: &str = "META#migrations";
const META_SK: &str = "META";
const APPLIED: &str = "applied_version";
const RUNNING: &str = "running_version";
const CURSOR_PK: &str = "cursor_pk";
const CURSOR_SK: &str = "cursor_sk";

/// How a migration run is made.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Who runs (recorded as the lease's holder).
    pub owner: String,
    /// Items read per scan page (each page is checkpointed).
    pub page_size: i32,
    /// Stop after this many pages, resumable later (`None`: run to the end).
    pub max_pages: Option<u32>,
    /// The lease lapses this long after its last renewal (one per page) if the runner dies.
    pub lease_ttl: Duration,
    /// Stop (resumable, as with `max_pages`) before starting a page past this instant: a Lambda
    /// ends its run before its own deadline.
    pub deadline: Option<Instant>,
}

impl MigrateOptions {
    /// Defaults for `owner`: pages of 100 items, no page limit, a 60 s lease, no deadline.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            page_size: 100,
            max_pages: None,
            lease_ttl: Duration::from_secs(60),
            deadline: None,
        }
    }

    /// Whether a run that has read `pages` pages stops here.
    fn stops_after(&self, pages: u32) -> bool {
        self.max_pages.is_some_and(|max| pages >= max)
            || self.deadline.is_some_and(|at| Instant::now() >= at)
    }
}

/// One page of a migration run, for progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageProgress {
    /// The migration's version.
    pub version: u32,
    /// The migration's name.
    pub name: &'static str,
    /// Items of the table the page's scan read (selected or not).
    pub scanned: u64,
    /// Items of this page it selected.
    pub selected: usize,
    /// Items of this page it changed (the others changed or vanished meanwhile).
    pub changed: usize,
    /// Items changed by this migration so far, in this run.
    pub total_changed: u64,
    /// Items of the table this migration's scan read so far, in this run.
    pub total_scanned: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every migration is applied; `changed` items were written in this run.
    Complete {
        /// The version the table is at.
        version: u32,
        /// Items written in this run.
        changed: u64,
        /// Items the run's scans read (every migration's).
        scanned: u64,
    },
    /// The page limit was reached mid-way; the next run resumes from the checkpoint.
    Paused {
        /// The migration under way.
        version: u32,
        /// Items written in this run.
        changed: u64,
        /// Items the run's scans read (every migration's).
        scanned: u64,
    },
}

/// Where the table's migrations stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The last migration applied (1: none).
    pub applied: u32,
    /// The version this code writes.
    pub target: u32,
    /// A migration under way (started, not finished) and whether it has a checkpoint.
    pub running: Option<(u32, bool)>,
    /// The runner holding the lease, if one does.
    pub holder: Option<String>,
}

/// A migration's pending items (dry run or verification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The migration's version.
    pub version: u32,
    /// The migration's name.
    pub name: &'static str,
    /// How many items it would still change.
    pub items: u64,
    /// The keys (`PK` / `SK`) of the first few.
    pub examples: Vec<String>,
}

/// A client for `session-admin` on a DynamoDB-API server on this machine (moto's, DynamoDB
/// Local) at `endpoint`, as [`Component::Admin`]: its calls are held to that role.
pub fn admin_client(endpoint: &str, settings: &StoreSettings) -> Client {
    DynamoStore::local_client(endpoint, settings, Some(Component::Admin))
}

/// A client for `session-admin` from the environment's AWS configuration, as
/// [`Component::Admin`].
pub async fn admin_client_from_env(settings: &StoreSettings) -> Client {
    DynamoStore::client_from_env(settings, Component::Admin).await
}

fn meta_key() -> Item {
    key(META_PK, META_SK)
}

impl DynamoStore {
    /// Where the table's migrations stand (consistent reads).
    ///
    /// # Errors
    /// The store's, or a malformed progress item.
    pub async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        let meta = self.get(meta_key()).await?.unwrap_or_default();
        let running = meta
            .opt_number::<u32>(RUNNING)?
            .map(|v| (v, meta.contains_key(CURSOR_PK)));
        Ok(MigrationStatus {
            applied: meta.opt_number(APPLIED)?.unwrap_or(1),
            target: SCHEMA_VERSION,
            running,
            holder: MigrationLease::holder(self).await?,
        })
    }

    /// Runs the migrations not yet applied, in order, under the `migrations` lease, calling
    /// `progress` after each page. Idempotent: with nothing to do it writes nothing but the
    /// lease.
    ///
    /// # Errors
    /// [`StoreError::LeaseHeld`] (naming the holder) if another runner holds the lease,
    /// [`StoreError::LeaseLost`] if it lapsed mid-run, or the store's.
    pub async fn migrate_up(
        &self,
        options: &MigrateOptions,
        progress: &mut (dyn FnMut(&PageProgress) + Send),
    ) -> Result<RunOutcome, StoreError> {
        let mut lease = MigrationLease::acquire(self, &options.owner, options.lease_ttl).await?;
        let outcome = self.run_pending(&mut lease, options, progress).await;
        // Released whatever happened, so the next runner need not wait for it to lapse.
        let released = lease.release(self).await;
        let outcome = outcome?;
        released?;
        Ok(outcome)
    }

    async fn run_pending(
        &self,
        lease: &mut MigrationLease,
        options: &MigrateOptions,
        progress: &mut (dyn FnMut(&PageProgress) + Send),
    ) -> Result<RunOutcome, StoreError> {
        let mut pages = 0;
        let mut changed = 0;
        let mut scanned = 0;
        for migration in migrations() {
            let meta = self.get(meta_key()).await?.unwrap_or_default();
            if meta.opt_number::<u32>(APPLIED)?.unwrap_or(1) >= migration.version() {
                continue;
            }
            let mut cursor = if meta.opt_number::<u32>(RUNNING)? == Some(migration.version()) {
                cursor_from(&meta)
            } else {
                None
            };
            let (mut total, mut total_scanned) = (0, 0);
            loop {
                if options.stops_after(pages) {
                    return Ok(RunOutcome::Paused {
                        version: migration.version(),
                        changed,
                        scanned,
                    });
                }
                let page = self
                    .scan_page(&*migration, cursor, Some(options.page_size))
                    .await?;
                let (items, next) = (page.items, page.next);
                let mut changed_here = 0;
                for item in &items {
                    if let Some(write) = migration.write_for(item)? {
                        // A failed condition: a writer brought the item up, or it went.
                        if applied(self.write(write.at_schema(migration.version())).await)? {
                            changed_here += 1;
                        }
                    }
                }
                total += changed_here;
                changed += changed_here as u64;
                total_scanned += page.scanned;
                scanned += page.scanned;
                pages += 1;
                self.checkpoint(lease, migration.version(), next.as_ref())
                    .await?;
                lease.renew(self).await?;
                progress(&PageProgress {
                    version: migration.version(),
                    name: migration.name(),
                    scanned: page.scanned,
                    selected: items.len(),
                    changed: changed_here,
                    total_changed: total as u64,
                    total_scanned,
                });
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(RunOutcome::Complete {
            version: SCHEMA_VERSION,
            changed,
            scanned,
        })
    }

    /// Records how far `version` got: the key its scan reached, or (`None`) that it is applied.
    /// Fenced: refused once a runner with a later lease token has written.
    async fn checkpoint(
        &self,
        lease: &MigrationLease,
        version: u32,
        cursor: Option<&Item>,
    ) -> Result<(), StoreError> {
        let write = match cursor {
            Some(cursor) => Write::update(
                meta_key(),
                "SET #running_version = :version, #cursor_pk = :pk, #cursor_sk = :sk, \
                 #fence = :token",
            )
            .bind(":pk", cursor_part(cursor, TableSpec::PK)?)
            .bind(":sk", cursor_part(cursor, TableSpec::SK)?),
            None => Write::update(
                meta_key(),
                "SET #applied_version = :version, #fence = :token \
                 REMOVE #running_version, #cursor_pk, #cursor_sk",
            ),
        };
        let write = write
            .when("attribute_not_exists(#fence) OR #fence <= :token")
            .bind(":version", n(version))
            .bind(":token", n(lease.token()));
        match self.write(write).await {
            Ok(_) => Ok(()),
            Err(WriteError::ConditionFailed) => Err(StoreError::LeaseLost {
                name: lease::LEASE_NAME.to_owned(),
            }),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    /// One page of the items `migration` selects, from `start`.
    async fn scan_page(
        &self,
        migration: &dyn Migration,
        start: Option<Item>,
        limit: Option<i32>,
    ) -> Result<ScanPage, StoreError> {
        let (filter, values) = migration.pending();
        let mut scan = self
            .client
            .scan()
            .table_name(self.table.as_ref())
            .consistent_read(true)
            .filter_expression(filter)
            .set_exclusive_start_key(start)
            .set_limit(limit);
        for (name, value) in super::write::expression_names(filter) {
            scan = scan.expression_attribute_names(name, value);
        }
        for (name, value) in values {
            scan = scan.expression_attribute_values(name, value);
        }
        let out = scan.send().await.map_err(classify)?;
        Ok(ScanPage {
            scanned: u64::try_from(out.scanned_count).unwrap_or(0),
            items: out.items.unwrap_or_default(),
            next: out.last_evaluated_key,
        })
    }

    /// What each migration would still change, whether or not it is recorded as applied (a
    /// dry run before `up`; after it, `verify`, which should find nothing). Reads only.
    ///
    /// # Errors
    /// The store's.
    pub async fn migrations_pending(&self) -> Result<Vec<Pending>, StoreError> {
        const EXAMPLES: usize = 10;
        let mut report = Vec::new();
        for migration in migrations() {
            let mut pending = Pending {
                version: migration.version(),
                name: migration.name(),
                items: 0,
                examples: Vec::new(),
            };
            let mut start = None;
            loop {
                let ScanPage { items, next, .. } = self.scan_page(&*migration, start, None).await?;
                for item in &items {
                    if migration.write_for(item)?.is_some() {
                        pending.items += 1;
                        if pending.examples.len() < EXAMPLES {
                            pending.examples.push(format!(
                                "{} / {}",
                                item.opt_string(TableSpec::PK).unwrap_or("?"),
                                item.opt_string(TableSpec::SK).unwrap_or("?"),
                            ));
                        }
                    }
                }
                match next {
                    Some(next) => start = Some(next),
                    None => break,
                }
            }
            report.push(pending);
        }
        Ok(report)
    }
}

/// One page of a migration's scan.
struct ScanPage {
    /// The items it selected.
    items: Vec<Item>,
    /// The items the scan read, selected or not.
    scanned: u64,
    /// Where the next page begins (`None`: this was the last).
    next: Option<Item>,
}

fn cursor_from(meta: &Item) -> Option<Item> {
    Some(key(
        meta.opt_string(CURSOR_PK)?,
        meta.opt_string(CURSOR_SK)?,
    ))
}

fn cursor_part(cursor: &Item, name: &str) -> Result<AttributeValue, StoreError> {
    cursor
        .opt_string(name)
        .map(s)
        .ok_or_else(|| super::write::backend(MalformedCursor(name.to_owned())))
}

/// A scan's `LastEvaluatedKey` without the table's string keys.
#[derive(Debug, thiserror::Error)]
#[error("scan cursor lacks the string key attribute {0:?}")]
struct MalformedCursor(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_migration_brings_items_to_the_version_writers_write() {
        let versions: Vec<u32> = migrations().iter().map(|m| m.version()).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(versions.last(), Some(&SCHEMA_VERSION));
    }
}
