//! Secrets read from Secrets Manager at start, against moto's server: the backends' client key
//! (`backends.tls.key_secret_arn`) and the ticket keys (`auth.ticket_signing_key_secret_arn`,
//! `auth.ticket_verify_keys_secret_arn`), as each component does at its cold start, with its own
//! component name (so the permission check holds the call against each one's role; the secrets'
//! names tell infra/checks/permissions.py which of the deployment's secrets they stand for).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use figment::Figment;
use secrecy::ExposeSecret as _;
use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::component::Component;
use session_core::config::{ConfigError, Settings};
use session_core::secrets::{load_backend_tls_key, load_secrets, local_client};
use session_tests::moto::Moto;

const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// A secret holding `value`, put by the test itself (no component in its user agent).
async fn secret(value: &str) -> String {
    named_secret("backend-tls-key", value).await
}

/// A secret named after `kind` holding `value`.
async fn named_secret(kind: &str, value: &str) -> String {
    Moto::shared().create_secret(kind, value).await
}

/// Settings for mutual TLS whose key is the secret `arn`, over files holding `CERT`.
fn settings(arn: &str) -> Settings {
    let dir = std::env::temp_dir().join(format!("secrets-test-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, CERT).unwrap();
        path
    };
    let figment = Figment::new()
        .merge(("backends.auth_url", "https://auth.session.internal:50052"))
        .merge((
            "backends.simulator_url",
            "https://simulator.session.internal:50051",
        ))
        .merge(("backends.tls.ca_file", file("ca.crt")))
        .merge(("backends.tls.cert_file", file("tls.crt")))
        .merge(("backends.tls.key_secret_arn", arn));
    Settings::from_figment(&figment).unwrap()
}

async fn load(settings: &mut Settings, component: Component) -> Result<(), ConfigError> {
    load_backend_tls_key(settings, || async {
        local_client(Moto::shared().endpoint(), component)
    })
    .await
}

#[tokio::test]
async fn each_function_reads_the_client_key_from_its_secret_at_start() {
    let arn = secret(KEY).await;

    for component in [
        Component::RestApi,
        Component::Authorizer,
        Component::WsAuthorizer,
        Component::WsHandler,
    ] {
        let mut settings = settings(&arn);
        assert!(settings.backends.tls.identity_pem().is_none());

        load(&mut settings, component).await.unwrap();

        let (cert, key) = settings.backends.tls.identity_pem().expect("an identity");
        assert_eq!(cert, CERT);
        assert_eq!(key.expose_secret(), KEY);
    }
}

#[tokio::test]
async fn a_missing_secret_stops_the_start_naming_the_setting() {
    let arn = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-{}-AbCdEf",
        ulid::Ulid::new()
    );
    let mut settings = settings(&arn);

    let error = load(&mut settings, Component::RestApi).await.unwrap_err();

    let message = error.to_string();
    assert!(message.contains("backends.tls.key_secret_arn"), "{message}");
    assert!(message.contains(&arn), "{message}");
}

#[tokio::test]
async fn a_secret_without_a_pem_key_is_refused() {
    let arn = secret("not a key").await;
    let mut settings = settings(&arn);

    let error = load(&mut settings, Component::RestApi).await.unwrap_err();

    assert!(error.to_string().contains("holds no PEM"), "{error}");
    assert!(settings.backends.tls.identity_pem().is_none());
}

#[tokio::test]
async fn without_a_key_secret_nothing_is_asked_of_secrets_manager() {
    let mut settings = Settings::from_figment(&Figment::new()).unwrap();

    load_backend_tls_key(&mut settings, || async {
        panic!("no client is built without backends.tls.key_secret_arn")
    })
    .await
    .unwrap();
}

#[test]
fn a_key_file_and_a_key_secret_together_are_refused() {
    let figment = Figment::new()
        .merge(("backends.tls.key_file", "/tmp/tls.key"))
        .merge((
            "backends.tls.key_secret_arn",
            "arn:aws:secretsmanager:us-east-1:1:secret:k-AbCdEf",
        ));

    let error = Settings::from_figment(&figment).unwrap_err();

    assert!(
        error.to_string().contains("backends.tls.key_secret_arn"),
        "{error}"
    );
}

/// Settings naming the ticket key secrets given (plaintext backends).
fn ticket_settings(signing: Option<&str>, verify: Option<&str>) -> Settings {
    let mut figment = Figment::new();
    if let Some(arn) = signing {
        figment = figment.merge(("auth.ticket_signing_key_secret_arn", arn));
    }
    if let Some(arn) = verify {
        figment = figment.merge(("auth.ticket_verify_keys_secret_arn", arn));
    }
    Settings::from_figment(&figment).unwrap()
}

async fn load_all(settings: &mut Settings, component: Component) -> Result<(), ConfigError> {
    load_secrets(settings, || async {
        local_client(Moto::shared().endpoint(), component)
    })
    .await
}

#[tokio::test]
async fn the_rest_api_reads_the_signing_key_and_the_verifiers_the_public_keys_at_start() {
    let old = SigningKey::generate("2026-11").unwrap();
    let new = SigningKey::generate("2026-12").unwrap();
    let signing = named_secret("ticket-signing-key", new.to_json().expose_secret()).await;
    let jwks = serde_json::to_string(VerifyKeys::of(&[&old, &new]).unwrap().jwks()).unwrap();
    let verify = named_secret("ticket-verify-keys", &jwks).await;
    let mut rest_api = ticket_settings(Some(&signing), None);

    load_all(&mut rest_api, Component::RestApi).await.unwrap();

    assert_eq!(rest_api.auth.ticket_signing_key().unwrap().kid(), "2026-12");
    assert!(rest_api.auth.ticket_verify_keys().is_none());
    // The streamer's read stands for External Secrets Operator's, made with its role.
    for component in [Component::WsAuthorizer, Component::Streamer] {
        let mut verifier = ticket_settings(None, Some(&verify));

        load_all(&mut verifier, component).await.unwrap();

        let keys = verifier.auth.ticket_verify_keys().unwrap();
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["2026-11", "2026-12"]);
        assert!(verifier.auth.ticket_signing_key().is_none());
    }
}

#[tokio::test]
async fn a_ticket_key_secret_that_holds_no_key_stops_the_start_naming_the_setting() {
    let hmac = named_secret(
        "ticket-verify-keys",
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}"#,
    )
    .await;
    let not_json = named_secret("ticket-signing-key", "-----BEGIN PRIVATE KEY-----").await;

    let verify = load_all(
        &mut ticket_settings(None, Some(&hmac)),
        Component::WsAuthorizer,
    )
    .await
    .unwrap_err()
    .to_string();
    let signing = load_all(
        &mut ticket_settings(Some(&not_json), None),
        Component::RestApi,
    )
    .await
    .unwrap_err()
    .to_string();

    assert!(
        verify.contains("auth.ticket_verify_keys_secret_arn") && verify.contains("kty must be EC"),
        "{verify}"
    );
    assert!(
        signing.contains("auth.ticket_signing_key_secret_arn"),
        "{signing}"
    );
    assert!(
        !signing.contains("BEGIN PRIVATE KEY"),
        "key material is never echoed: {signing}"
    );
}
