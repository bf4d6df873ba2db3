//! Reading what tests minted: a claim of a JWT (bearer tokens, tickets), without verifying it.

use base64::Engine as _;

/// The string claim `name` of the compact JWT `token`.
///
/// # Panics
/// `token` is not a JWT, or has no such string claim.
pub fn claim(token: &str, name: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("JSON claims");
    claims[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string claim {name}"))
        .to_owned()
}
