//! Operators' tool: `session-admin migrate status|up [--dry-run]|verify` runs the table's data
//! migrations (see docs/operations.md, "Migrations").

// A command line: its output is for the operator's terminal, not the logs.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use session_core::clock::SystemClock;
use session_core::config::StoreSettings;
use session_core::store::DynamoStore;
use session_core::store::migrate::{self, MigrateOptions, RunOutcome};

/// Operations on the session service's DynamoDB table.
#[derive(Parser)]
#[command(name = "session-admin")]
struct Cli {
    /// A DynamoDB endpoint other than AWS's (e.g. moto's server, `http://127.0.0.1:5000`).
    #[arg(long, global = true)]
    dynamodb_endpoint: Option<String>,
    /// The table (default: the services' default table name).
    #[arg(long, global = true)]
    table: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Data migrations of the table.
    #[command(subcommand)]
    Migrate(Migrate),
}

#[derive(Subcommand)]
enum Migrate {
    /// The applied version, the target, a migration under way and the lease's holder.
    Status,
    /// Runs the pending migrations (resuming one under way).
    Up {
        /// Count what each migration would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Items read per page (each page is checkpointed).
        #[arg(long, default_value_t = 100)]
        page_size: i32,
    },
    /// Lists items no migration has brought to the current version (exit 1 if any).
    Verify,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let table = cli
        .table
        .unwrap_or_else(|| StoreSettings::default().table_name);
    let client = migrate::admin_client(cli.dynamodb_endpoint.as_deref()).await;
    let store = DynamoStore::new(client, &table, Arc::new(SystemClock));
    let Command::Migrate(command) = cli.command;
    match command {
        Migrate::Status => {
            let status = store.migration_status().await.context("reading status")?;
            println!(
                "table {table}: applied {}, target {}",
                status.applied, status.target
            );
            if let Some((version, checkpointed)) = status.running {
                println!("migration {version} under way (checkpoint: {checkpointed})");
            }
            if let Some(holder) = status.holder {
                println!("lease held by {holder}");
            }
        }
        Migrate::Up { dry_run: true, .. } | Migrate::Verify => {
            let verify = matches!(command, Migrate::Verify);
            let pending = store.migrations_pending().await.context("scanning")?;
            let mut left = 0;
            for p in &pending {
                println!(
                    "migration {} ({}): {} items pending",
                    p.version, p.name, p.items
                );
                for example in &p.examples {
                    println!("  {example}");
                }
                left += p.items;
            }
            if verify && left > 0 {
                anyhow::bail!("{left} items are not at the current schema version");
            }
        }
        Migrate::Up { page_size, .. } => {
            let owner = format!("session-admin/{}", std::process::id());
            let options = MigrateOptions {
                page_size,
                ..MigrateOptions::new(owner)
            };
            let outcome = store
                .migrate_up(&options, &mut |page| {
                    eprintln!(
                        "migration {} ({}): page of {} selected, {} changed, {} so far",
                        page.version, page.name, page.selected, page.changed, page.total_changed
                    );
                })
                .await
                .context("migrating")?;
            match outcome {
                RunOutcome::Complete { version, changed } => {
                    println!("table {table} at version {version} ({changed} items changed)");
                }
                RunOutcome::Paused { version, changed } => {
                    println!("paused in migration {version} ({changed} items changed)");
                }
            }
        }
    }
    Ok(())
}
