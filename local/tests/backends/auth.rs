//! The auth service over gRPC: the tokens it issues validate; every way a token can be wrong is
//! rejected with its own reason; its JWKS publishes the key that verifies its tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;
use session_local::auth::{AuthHandle, AuthSettings, Claims};
use session_proto::auth::v1::RejectionReason;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{spawn_auth, spawn_auth_with, validate};

const HOUR: Duration = Duration::from_secs(3600);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Claims for `alice` that the service would issue, to change before signing.
fn claims(auth: &AuthHandle) -> Claims {
    auth.auth().claims("alice", &["sessions:read"], HOUR)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS with this header and payload and the given signature part, as an attacker
/// would write it by hand.
fn forge(header: &serde_json::Value, payload: &str, signature: &str) -> String {
    format!("{}.{payload}.{signature}", b64(header.to_string()))
}

/// The `(header, payload, signature)` parts of a compact JWS.
fn parts(token: &str) -> (String, String, String) {
    let mut parts = token.split('.').map(str::to_owned);
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("a JWS has three parts");
    };
    (header, payload, signature)
}

/// Validates `token` over gRPC and asserts it is rejected for `reason`, with a detail that
/// explains it without repeating the token.
async fn assert_rejected(auth: &AuthHandle, token: &str, audience: &str, reason: RejectionReason) {
    let rejection = validate(auth, token, audience)
        .await
        .expect_err("the token must be rejected");
    assert_eq!(
        rejection.reason(),
        reason,
        "token {token:?}: {}",
        rejection.detail
    );
    assert!(!rejection.detail.is_empty(), "a rejection says why");
    if token.len() > 8 {
        assert!(
            !rejection.detail.contains(token),
            "the detail must not contain the token"
        );
    }
}

/// The public key of the service's current `kid` as the JWKS publishes it: the uncompressed
/// SEC1 point (`0x04 || x || y`).
fn public_key_bytes(auth: &AuthHandle) -> Vec<u8> {
    let jwks = auth.auth().jwks();
    let kid = auth.auth().current_kid();
    let key = jwks["keys"]
        .as_array()
        .expect("keys is an array")
        .iter()
        .find(|key| key["kid"] == kid.as_str())
        .expect("the JWKS lists the current kid");
    let coordinate = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(key[name].as_str().expect("a base64url coordinate"))
            .expect("base64url")
    };
    let mut point = vec![0x04];
    point.extend(coordinate("x"));
    point.extend(coordinate("y"));
    point
}

#[tokio::test]
async fn an_issued_token_validates_with_its_subject_scopes_expiry_token_id_and_issuer() {
    // Arrange
    let auth = spawn_auth().await;
    let claims = auth
        .auth()
        .claims("alice", &["sessions:read", "sessions:write"], HOUR);
    let token = auth.auth().sign(&claims).unwrap();

    // Act
    let valid = validate(&auth, &token, "")
        .await
        .expect("the token is valid");

    // Assert
    assert_eq!(valid.subject, "alice");
    assert_eq!(valid.scopes, ["sessions:read", "sessions:write"]);
    assert_eq!(valid.expires_at_unix_seconds, claims.exp);
    assert_eq!(valid.token_id, claims.jti);
    assert_eq!(valid.issuer, "session-local-auth");
    assert!((claims.exp - now() - 3600).abs() <= 5, "issued for an hour");
}

#[tokio::test]
async fn every_issued_token_has_its_own_token_id() {
    let auth = spawn_auth().await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let token = auth.auth().issue("bob", &["a"], HOUR).unwrap();
        let valid = validate(&auth, &token, "").await.unwrap();
        assert!(ids.insert(valid.token_id), "token ids are unique");
    }
}

#[tokio::test]
async fn a_token_is_valid_for_any_audience_it_lists_when_the_caller_names_one() {
    let auth = spawn_auth().await;
    let mut claims = claims(&auth);
    claims.aud = vec!["session-service".into(), "billing".into()];
    let token = auth.auth().sign(&claims).unwrap();
    for audience in ["", "session-service", "billing"] {
        validate(&auth, &token, audience)
            .await
            .unwrap_or_else(|r| panic!("valid for {audience:?}: {r:?}"));
    }
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_rejected_for_bad_signature() {
    let auth = spawn_auth().await;
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], HOUR)
        .unwrap();
    let (header, _, signature) = parts(&token);
    let mut tampered = claims(&auth);
    tampered.sub = "mallory".into();
    tampered.scope = "admin".into();
    let payload = b64(serde_json::to_vec(&tampered).unwrap());
    let token = format!("{header}.{payload}.{signature}");
    assert_rejected(&auth, &token, "", RejectionReason::BadSignature).await;
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_the_services_kid_is_rejected_for_bad_signature() {
    // Arrange: an attacker's own ES256 key, and the service's kid in the header.
    let auth = spawn_auth().await;
    let attacker = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let attacker = EncodingKey::from_ec_der(attacker.to_pkcs8v1().unwrap().as_ref());
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(auth.auth().current_kid());
    let token = jsonwebtoken::encode(&header, &claims(&auth), &attacker).unwrap();

    // Act and Assert
    assert_rejected(&auth, &token, "", RejectionReason::BadSignature).await;
    // A signature of the right encoding but the wrong length is a bad signature too.
    let (header, payload, _) = parts(&token);
    let short = format!("{header}.{payload}.{}", b64([7_u8; 10]));
    assert_rejected(&auth, &short, "", RejectionReason::BadSignature).await;
}

#[tokio::test]
async fn a_token_with_alg_none_is_rejected_as_algorithm_not_allowed() {
    let auth = spawn_auth().await;
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], HOUR)
        .unwrap();
    let (_, payload, signature) = parts(&token);
    let kid = auth.auth().current_kid();
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": kid });
        // Unsigned, as `alg: none` means, and with the genuine signature left in place.
        for signature in ["", signature.as_str()] {
            let token = forge(&header, &payload, signature);
            assert_rejected(&auth, &token, "", RejectionReason::AlgorithmNotAllowed).await;
        }
    }
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_rejected_as_algorithm_not_allowed() {
    // Arrange: the key-confusion attack: HMAC keyed with the published public key, which a
    // verifier trusting the header's `alg` would check with the same bytes.
    let auth = spawn_auth().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(auth.auth().current_kid());
    let jwk = auth.auth().jwks()["keys"][0].to_string();
    for secret in [public_key_bytes(&auth), jwk.into_bytes()] {
        let token =
            jsonwebtoken::encode(&header, &claims(&auth), &EncodingKey::from_secret(&secret))
                .unwrap();

        // Act and Assert
        assert_rejected(&auth, &token, "", RejectionReason::AlgorithmNotAllowed).await;
    }
}

#[tokio::test]
async fn a_token_with_an_algorithm_the_service_does_not_issue_is_rejected_as_algorithm_not_allowed()
{
    let auth = spawn_auth().await;
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], HOUR)
        .unwrap();
    let (_, payload, signature) = parts(&token);
    let kid = auth.auth().current_kid();
    for alg in ["RS256", "PS256", "ES384", "EdDSA", "HS512", "es256"] {
        let token = forge(&json!({ "alg": alg, "kid": kid }), &payload, &signature);
        assert_rejected(&auth, &token, "", RejectionReason::AlgorithmNotAllowed).await;
    }
}

#[tokio::test]
async fn a_token_naming_no_kid_or_a_kid_the_service_does_not_know_is_rejected_as_unknown_key() {
    let auth = spawn_auth().await;
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], HOUR)
        .unwrap();
    let (_, payload, signature) = parts(&token);
    for header in [
        json!({ "alg": "ES256", "typ": "JWT" }),
        json!({ "alg": "ES256", "kid": "local-someone-else" }),
    ] {
        let token = forge(&header, &payload, &signature);
        assert_rejected(&auth, &token, "", RejectionReason::UnknownKey).await;
    }
}

#[tokio::test]
async fn a_token_of_another_issuer_is_rejected_as_wrong_issuer() {
    let auth = spawn_auth().await;
    for issuer in ["someone-else", "", "session-local-auth "] {
        let mut claims = claims(&auth);
        claims.iss = issuer.into();
        let token = auth.auth().sign(&claims).unwrap();
        assert_rejected(&auth, &token, "", RejectionReason::WrongIssuer).await;
    }
}

#[tokio::test]
async fn a_token_for_another_audience_is_rejected_as_wrong_audience() {
    let auth = spawn_auth().await;
    // A token for another service, checked for the default audience ...
    let mut claims = claims(&auth);
    claims.aud = vec!["billing".into()];
    let token = auth.auth().sign(&claims).unwrap();
    assert_rejected(&auth, &token, "", RejectionReason::WrongAudience).await;
    assert_rejected(
        &auth,
        &token,
        "session-service",
        RejectionReason::WrongAudience,
    )
    .await;
    // ... and a token for the default audience, checked for another one.
    let token = auth.auth().issue("alice", &["a"], HOUR).unwrap();
    assert_rejected(&auth, &token, "billing", RejectionReason::WrongAudience).await;
}

#[tokio::test]
async fn an_expired_token_is_rejected_as_expired() {
    let auth = spawn_auth().await;
    for expired_for in [1, 60, 86_400] {
        let mut claims = claims(&auth);
        claims.exp = now() - expired_for;
        claims.nbf = Some(claims.exp - 3600);
        claims.iat = claims.exp - 3600;
        let token = auth.auth().sign(&claims).unwrap();
        assert_rejected(&auth, &token, "", RejectionReason::Expired).await;
    }
}

#[tokio::test]
async fn a_token_not_valid_yet_is_rejected_as_not_yet_valid() {
    let auth = spawn_auth().await;
    let mut claims = claims(&auth);
    claims.nbf = Some(now() + 600);
    claims.exp = now() + 7200;
    let token = auth.auth().sign(&claims).unwrap();
    assert_rejected(&auth, &token, "", RejectionReason::NotYetValid).await;
}

#[tokio::test]
async fn clock_leeway_accepts_a_token_just_expired_or_not_yet_valid_and_no_more() {
    // Arrange: one minute of tolerated clock skew.
    let auth = spawn_auth_with(AuthSettings {
        leeway: Duration::from_secs(60),
        ..AuthSettings::default()
    })
    .await;
    let token_with = |exp: i64, nbf: i64| {
        let mut claims = claims(&auth);
        claims.exp = exp;
        claims.nbf = Some(nbf);
        auth.auth().sign(&claims).unwrap()
    };

    // Act and Assert: within the leeway, valid; beyond it, rejected.
    let now = now();
    validate(&auth, &token_with(now - 20, now - 3600), "")
        .await
        .expect("expired 20 s ago, inside a 60 s leeway");
    validate(&auth, &token_with(now + 3600, now + 20), "")
        .await
        .expect("valid in 20 s, inside a 60 s leeway");
    assert_rejected(
        &auth,
        &token_with(now - 300, now - 3600),
        "",
        RejectionReason::Expired,
    )
    .await;
    assert_rejected(
        &auth,
        &token_with(now + 3600, now + 300),
        "",
        RejectionReason::NotYetValid,
    )
    .await;
}

#[tokio::test]
async fn tokens_that_are_not_well_formed_jwts_are_rejected_as_malformed() {
    let auth = spawn_auth().await;
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], HOUR)
        .unwrap();
    let (header, payload, signature) = parts(&token);
    let kid = auth.auth().current_kid();
    let shapes = [
        String::new(),
        "not-a-jwt".to_owned(),
        format!("{header}.{payload}"),
        format!("{token}.{signature}"),
        format!("%%%.{payload}.{signature}"),
        format!("{}.{payload}.{signature}", b64("not json")),
        forge(&json!({ "kid": kid }), &payload, &signature),
        forge(&json!({ "alg": 256, "kid": kid }), &payload, &signature),
        format!("{header}.{payload}.%%%"),
    ];
    for token in &shapes {
        assert_rejected(&auth, token, "", RejectionReason::Malformed).await;
    }
}

#[tokio::test]
async fn signed_tokens_with_missing_empty_or_mistyped_claims_are_rejected_as_malformed() {
    let auth = spawn_auth().await;
    let good = serde_json::to_value(claims(&auth)).unwrap();
    let without = |name: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(name);
        claims
    };
    let with = |name: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[name] = value;
        claims
    };
    let payloads = [
        without("sub"),
        without("exp"),
        without("jti"),
        without("iss"),
        without("aud"),
        with("sub", json!("")),
        with("jti", json!("")),
        with("exp", json!("tomorrow")),
        with("aud", json!(42)),
        json!("just a string"),
        json!(["an", "array"]),
    ];
    for payload in &payloads {
        let token = auth.auth().sign(payload).unwrap();
        assert_rejected(&auth, &token, "", RejectionReason::Malformed).await;
    }
}

#[tokio::test]
async fn the_jwks_publishes_the_signing_key_under_its_kid_and_that_key_verifies_issued_tokens() {
    // Arrange
    let auth = spawn_auth().await;
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], HOUR)
        .unwrap();
    let kid = auth.auth().current_kid();

    // Act: what any JWKS client does: parse the document, find the token's kid, verify.
    let jwks: JwkSet = serde_json::from_value(auth.auth().jwks()).expect("a JWKS document");
    let jwk = jwks.find(&kid).expect("the JWKS lists the signing kid");
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["session-service"]);
    validation.set_issuer(&["session-local-auth"]);
    let verified =
        jsonwebtoken::decode::<Claims>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .expect("the published key verifies the token");

    // Assert
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(verified.claims.sub, "alice");
    let published = &auth.auth().jwks()["keys"][0];
    assert_eq!(published["kty"], "EC");
    assert_eq!(published["crv"], "P-256");
    assert_eq!(published["alg"], "ES256");
    assert_eq!(published["use"], "sig");
    assert!(
        published.get("d").is_none(),
        "the private key is never published"
    );
}

#[tokio::test]
async fn after_a_key_rotation_the_jwks_lists_both_keys_and_tokens_of_either_validate() {
    let auth = spawn_auth().await;
    let old_kid = auth.auth().current_kid();
    let old = auth.auth().issue("alice", &["a"], HOUR).unwrap();
    let new_kid = auth.auth().rotate_key().unwrap();
    let new = auth.auth().issue("bob", &["b"], HOUR).unwrap();
    let jwks: JwkSet = serde_json::from_value(auth.auth().jwks()).unwrap();
    assert!(jwks.find(&old_kid).is_some() && jwks.find(&new_kid).is_some());
    assert_eq!(validate(&auth, &old, "").await.unwrap().subject, "alice");
    assert_eq!(validate(&auth, &new, "").await.unwrap().subject, "bob");
    let (header, _, _) = parts(&new);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["kid"], new_kid.as_str(), "the new key signs");
}

#[tokio::test]
async fn the_auth_service_reports_serving_on_grpc_health() {
    let auth = spawn_auth().await;
    let mut health = HealthClient::new(auth.channel());
    for service in ["", "auth.v1.AuthService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
}
