//! `session-admin`: the table's data migrations (`core/src/store/dynamodb/migrate/`), run from a
//! terminal (`cli`) or, in Lambda, as the CloudFormation custom resource every deploy runs
//! (`custom_resource`), and the point-in-time restore drill (`restore`, terminal only). Layout:
//! `cli` (commands and their output), `progress` (the progress bar or plain lines),
//! `custom_resource` (the Lambda handler and its answer to CloudFormation), `restore` (the
//! drill), `failover` (moving sessions' home region, terminal only).

pub mod cli;
pub mod custom_resource;
pub mod failover;
mod progress;
pub mod restore;

use std::sync::Arc;

use session_core::clock::SystemClock;
use session_core::component::Component;
use session_core::config::{ConfigError, Settings, StoreSettings};
use session_core::store::DynamoStore;
use session_core::store::migrate;

/// Runs `session-admin`: in Lambda (`AWS_LAMBDA_RUNTIME_API` set) it serves custom-resource
/// events; elsewhere it runs the command line's command.
///
/// # Errors
/// The command's, or the Lambda runtime's.
pub async fn main() -> anyhow::Result<()> {
    // Boxed: the store's futures nest deeply enough to overflow the compiler's layout limit.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return Box::pin(custom_resource::serve())
            .await
            .map_err(|e| anyhow::anyhow!(e));
    }
    let cli = <cli::Cli as clap::Parser>::parse();
    Box::pin(cli::run(cli, &mut std::io::stdout().lock())).await
}

/// The store settings of the environment (`SESSION_STORE__TABLE_NAME`, ...), as every component
/// reads them.
///
/// # Errors
/// A setting is malformed or out of range (named).
pub fn store_settings() -> Result<StoreSettings, ConfigError> {
    Ok(Settings::load(None)?.store)
}

/// The store on `settings`' table, calling DynamoDB as the `admin` component: at `endpoint`
/// (a local server, dummy credentials) if given, else at AWS's (or `settings.endpoint`).
pub async fn admin_store(settings: &StoreSettings, endpoint: Option<&str>) -> DynamoStore {
    let client = match endpoint {
        Some(endpoint) => migrate::admin_client(endpoint, settings),
        None => migrate::admin_client_from_env(settings).await,
    };
    DynamoStore::new(client, &settings.table_name, Arc::new(SystemClock))
}

/// A client on `settings`' DynamoDB as the `recovery` component (the restore drill, held to
/// the template's `TableRecoveryRole`): at `endpoint` (dummy credentials) if given, else AWS's.
pub async fn recovery_client(
    settings: &StoreSettings,
    endpoint: Option<&str>,
) -> aws_sdk_dynamodb::Client {
    match endpoint {
        Some(endpoint) => DynamoStore::local_client(endpoint, settings, Some(Component::Recovery)),
        None => DynamoStore::client_from_env(settings, Component::Recovery).await,
    }
}
