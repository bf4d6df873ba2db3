//! Secrets read once at start from AWS Secrets Manager: the backends' client key
//! (`backends.tls.key_secret_arn`), so that a Lambda's key never ships in a layer.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use secrecy::SecretString;

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
    let answer = client()
        .await
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| ConfigError::Invalid {
            setting: "backends.tls.key_secret_arn",
            problem: format!("cannot read {arn}: {}", DisplayErrorContext(&e)),
        })?;
    let pem = answer.secret_string.ok_or_else(|| ConfigError::Invalid {
        setting: "backends.tls.key_secret_arn",
        problem: format!("{arn} has no SecretString (a binary secret?)"),
    })?;
    settings
        .backends
        .tls
        .set_key_from_secret(SecretString::from(pem))
}
