//! Secrets read once at start from AWS Secrets Manager: the backends' client key
//! (`backends.tls.key_secret_arn`) and the connect tickets' keys
//! (`auth.ticket_signing_key_secret_arn`, `auth.ticket_verify_keys_secret_arn`), so that a
//! Lambda's keys never ship in a layer. [`load_secrets`] reads every one a process names.

pub use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use secrecy::{ExposeSecret as _, SecretString};

use crate::component::Component;
use crate::config::{ConfigError, Settings};

/// A Secrets Manager client from the environment's AWS configuration, whose calls name
/// `component` in their user agent.
pub async fn client_from_env(component: Component) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .app_name(component.app_name())
        .load()
        .await;
    Client::new(&config)
}

/// A client of a Secrets-Manager-API server on this machine (moto's) at `endpoint`, with fixed
/// dummy credentials, whose calls name `component`.
pub fn local_client(endpoint: &str, component: Component) -> Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .endpoint_url(endpoint)
        .app_name(component.app_name())
        .build();
    Client::from_conf(config)
}

/// Reads every secret the settings name and that is not read yet (see [`load_backend_tls_key`]
/// and [`load_ticket_keys`]); `client` is built once, and only if there is one to read.
///
/// # Errors
/// A secret cannot be read or holds the wrong thing; the error names the setting.
pub async fn load_secrets<F, Fut>(settings: &mut Settings, client: F) -> Result<(), ConfigError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Client>,
{
    let pending = settings.backends.tls.key_secret_pending().is_some()
        || settings.auth.ticket_signing_key_pending().is_some()
        || settings.auth.ticket_verify_keys_pending().is_some();
    if !pending {
        return Ok(());
    }
    let client = client().await;
    load_backend_tls_key(settings, || std::future::ready(client.clone())).await?;
    load_ticket_keys(settings, &client).await
}

/// Reads the ticket keys from `auth.ticket_verify_keys_secret_arn` (a JWKS) and
/// `auth.ticket_signing_key_secret_arn` (`{"kid", "private_key_pem"}`), those set and not read
/// yet, into the settings.
///
/// # Errors
/// A secret cannot be read or is not the document expected, or the signing key is not among
/// the verify keys; the error names the setting.
pub async fn load_ticket_keys(settings: &mut Settings, client: &Client) -> Result<(), ConfigError> {
    let read = |setting: &'static str, arn: String| async move {
        read_secret_string(client, &arn)
            .await
            .map_err(|problem| ConfigError::Invalid { setting, problem })
    };
    if let Some(arn) = settings
        .auth
        .ticket_verify_keys_pending()
        .map(str::to_owned)
    {
        let jwks = read("auth.ticket_verify_keys_secret_arn", arn).await?;
        settings
            .auth
            .set_ticket_verify_keys_from_secret(jwks.expose_secret())?;
    }
    if let Some(arn) = settings
        .auth
        .ticket_signing_key_pending()
        .map(str::to_owned)
    {
        let key = read("auth.ticket_signing_key_secret_arn", arn).await?;
        settings
            .auth
            .set_ticket_signing_key_from_secret(key.expose_secret())?;
    }
    Ok(())
}

/// Reads the backends' client key from `backends.tls.key_secret_arn`, if set and not read yet,
/// into the settings; `client` is built only then (no Secrets Manager call without TLS).
///
/// # Errors
/// The secret cannot be read, or holds no PEM private key; the error names the setting.
pub async fn load_backend_tls_key<F, Fut>(
    settings: &mut Settings,
    client: F,
) -> Result<(), ConfigError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Client>,
{
    let Some(arn) = settings
        .backends
        .tls
        .key_secret_pending()
        .map(str::to_owned)
    else {
        return Ok(());
    };
    let pem = read_secret_string(&client().await, &arn)
        .await
        .map_err(|problem| ConfigError::Invalid {
            setting: "backends.tls.key_secret_arn",
            problem,
        })?;
    settings.backends.tls.set_key_from_secret(pem)
}

/// The `SecretString` of the secret `arn`: the one read every secret of the service goes
/// through.
///
/// # Errors
/// The secret cannot be read, or is binary; the message names the ARN.
pub async fn read_secret_string(client: &Client, arn: &str) -> Result<SecretString, String> {
    let answer = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| format!("cannot read {arn}: {}", DisplayErrorContext(&e)))?;
    answer
        .secret_string
        .map(SecretString::from)
        .ok_or_else(|| format!("{arn} has no SecretString (a binary secret?)"))
}
