//! The command line: `session-admin migrate status|up|verify` (docs/operations.md,
//! "Migrations"), `session-admin table restore` (the point-in-time recovery drill,
//! "Regions and disaster recovery") and `session-admin region failover|reconcile` (same
//! section). Results go to a writer (stdout), one fact a line, so scripts can grep them;
//! progress goes to stderr.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use session_core::clock::SystemClock;
use session_core::config::Settings;
use session_core::store::DynamoStore;
use session_core::store::migrate::{MigrateOptions, RunOutcome};

use super::failover::{self, FailoverRequest, ReconcileRequest};
use super::progress::Progress;
use super::restore::{self, RestoreRequest};

/// Operations on the session service's DynamoDB table.
#[derive(Debug, Parser)]
#[command(name = "session-admin")]
pub struct Cli {
    /// A DynamoDB endpoint other than AWS's (e.g. moto's server, `http://127.0.0.1:5000`),
    /// called with dummy credentials.
    #[arg(long, global = true)]
    dynamodb_endpoint: Option<String>,
    /// The table (default: `SESSION_STORE__TABLE_NAME`, else the services' default name).
    #[arg(long, global = true)]
    table: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Data migrations of the table.
    #[command(subcommand)]
    Migrate(Migrate),
    /// Operations on the table itself.
    #[command(subcommand)]
    Table(Table),
    /// Operations on the deployment's regions.
    #[command(subcommand)]
    Region(Region),
}

#[derive(Debug, Subcommand)]
enum Region {
    /// Fences region `--from` and moves the home of its sessions to `--to`, failing their
    /// simulators (calls DynamoDB as the `recovery` component). Idempotent; exits 1 if a
    /// session is homed in neither region.
    Failover {
        /// The region the sessions leave.
        #[arg(long)]
        from: String,
        /// The region taking them over.
        #[arg(long)]
        to: String,
        /// `all` (every session homed in `--from`), or session ids, comma-separated.
        #[arg(long, default_value = "all")]
        sessions: String,
        /// List the sessions that would move; write nothing (not even the fence).
        #[arg(long)]
        dry_run: bool,
    },
    /// The failback's first step: lists each session homed again in the fenced `--region` (a
    /// write it acknowledged before its failure that replicated after the takeover) and takes
    /// it over again into `--into`; the region stays fenced. Exits 1 if the region is not
    /// fenced for `--into`, or a session is homed elsewhere.
    Reconcile {
        /// The region a failover fenced, back now.
        #[arg(long)]
        region: String,
        /// The region its sessions were moved to.
        #[arg(long)]
        into: String,
        /// List the late writes; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Table {
    /// Restores a table from point-in-time recovery into a new table, checks it, and says
    /// what to deploy to repoint the stack (calls DynamoDB as the `recovery` component).
    Restore {
        /// The table to restore (point-in-time recovery on).
        #[arg(long)]
        source: String,
        /// The new table (it must not exist; the recovery role may create
        /// `<source>-<suffix>` only).
        #[arg(long)]
        target: String,
        /// The moment to restore, RFC 3339 (default: the latest restorable moment).
        #[arg(long)]
        at: Option<String>,
        /// Minutes to wait for the new table to be ACTIVE.
        #[arg(long, default_value_t = 240, value_parser = clap::value_parser!(u64).range(1..=1440))]
        wait_minutes: u64,
    },
}

#[derive(Debug, Subcommand)]
enum Migrate {
    /// The applied version, the target, a migration under way and the lease's holder.
    Status,
    /// Runs the pending migrations (resuming one under way).
    Up {
        /// Count what each migration would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Items read per page (each page is checkpointed).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..))]
        page_size: i32,
        /// Seconds the `migrations` lease outlives its last renewal (one per page): how long a
        /// killed runner blocks the next.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        lease_secs: u64,
    },
    /// Lists items no migration has brought to the current version (exit 1 if any).
    Verify,
}

/// The lease holder's name: `session-admin/<pid>-<start, ms since the epoch>`, so two
/// machines' runners (whose process ids may be equal) are told apart.
fn runner_name() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("session-admin/{}-{started}", std::process::id())
}

/// Runs `cli`'s command, writing its results to `out`.
///
/// # Errors
/// The settings are malformed, the store fails, another runner holds the lease (named), or
/// `verify` finds items left.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut settings = super::store_settings().context("reading the store settings")?;
    if let Some(table) = cli.table {
        settings.table_name = table;
    }
    let command = match cli.command {
        Command::Migrate(command) => command,
        Command::Table(Table::Restore {
            source,
            target,
            at,
            wait_minutes,
        }) => {
            let client = super::recovery_client(&settings, cli.dynamodb_endpoint.as_deref()).await;
            let request = RestoreRequest {
                source,
                target,
                at,
                wait: Duration::from_secs(wait_minutes * 60),
            };
            return restore_table(&client, &request, out).await;
        }
        Command::Region(region) => {
            let primary = Settings::load(None)
                .context("reading the settings")?
                .regions
                .primary()
                .clone();
            let client = super::recovery_client(&settings, cli.dynamodb_endpoint.as_deref()).await;
            let store = DynamoStore::new(client, &settings.table_name, Arc::new(SystemClock));
            match region {
                Region::Failover {
                    from,
                    to,
                    sessions,
                    dry_run,
                } => {
                    let request = FailoverRequest {
                        from,
                        to,
                        sessions,
                        dry_run,
                    };
                    failover::failover(&store, &request, &primary, out).await?;
                }
                Region::Reconcile {
                    region,
                    into,
                    dry_run,
                } => {
                    let request = ReconcileRequest {
                        region,
                        into,
                        dry_run,
                    };
                    failover::reconcile(&store, &request, &primary, out).await?;
                }
            }
            return Ok(());
        }
    };
    let table = settings.table_name.clone();
    let store = super::admin_store(&settings, cli.dynamodb_endpoint.as_deref()).await;
    match command {
        Migrate::Status => {
            let status = store.migration_status().await.context("reading status")?;
            writeln!(
                out,
                "table {table}: applied {}, target {}",
                status.applied, status.target
            )?;
            if let Some((version, checkpointed)) = status.running {
                writeln!(
                    out,
                    "migration {version} under way (checkpoint: {checkpointed})"
                )?;
            }
            if let Some(holder) = status.holder {
                writeln!(out, "lease held by {holder}")?;
            }
        }
        Migrate::Up { dry_run: true, .. } | Migrate::Verify => {
            let verify = matches!(command, Migrate::Verify);
            let pending = store.migrations_pending().await.context("scanning")?;
            let mut left = 0;
            for p in &pending {
                writeln!(
                    out,
                    "migration {} ({}): {} items pending",
                    p.version, p.name, p.items
                )?;
                for example in &p.examples {
                    writeln!(out, "  {example}")?;
                }
                left += p.items;
            }
            if verify && left > 0 {
                anyhow::bail!("{left} items are not at the current schema version");
            }
        }
        Migrate::Up {
            page_size,
            lease_secs,
            ..
        } => {
            let options = MigrateOptions {
                page_size,
                lease_ttl: Duration::from_secs(lease_secs),
                ..MigrateOptions::new(runner_name())
            };
            let mut progress = Progress::for_stderr();
            let outcome = store
                .migrate_up(&options, &mut |page| progress.page(page))
                .await;
            progress.finish();
            match outcome.context("migrating")? {
                RunOutcome::Complete {
                    version,
                    changed,
                    scanned,
                } => writeln!(
                    out,
                    "table {table} at version {version} ({changed} items changed, \
                     {scanned} items scanned)"
                )?,
                RunOutcome::Paused {
                    version,
                    changed,
                    scanned,
                } => writeln!(
                    out,
                    "paused in migration {version} ({changed} items changed, \
                     {scanned} items scanned)"
                )?,
            }
        }
    }
    Ok(())
}

/// `table restore`: the drill, then its facts and the deploy that repoints the stack.
async fn restore_table(
    client: &aws_sdk_dynamodb::Client,
    request: &RestoreRequest,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (source, target) = (&request.source, &request.target);
    let report = restore::restore(client, request, &mut |step| eprintln!("{step}")).await?;
    writeln!(
        out,
        "table {target}: restored from {source} ({}), ACTIVE, {} items",
        report.restored_at, report.target_items
    )?;
    writeln!(out, "table {source}: {} items now", report.source_items)?;
    if report.source_items != report.target_items {
        writeln!(
            out,
            "note: the counts differ: expected when {source} was written after the restored \
             moment"
        )?;
    }
    writeln!(
        out,
        "repoint: deploy the stack with TableMode=replica ReplicaTableName={target} \
         (docs/operations.md, \"Regions and disaster recovery\")"
    )?;
    Ok(())
}
