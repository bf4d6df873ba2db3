//! Operators' tool and the deploy's migration Lambda: `session-admin migrate
//! status|up [--dry-run]|verify` runs the table's data migrations (docs/operations.md,
//! "Migrations"); in Lambda it serves CloudFormation custom-resource events.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    session_functions::admin::main().await
}
