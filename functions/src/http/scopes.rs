//! The scopes each route needs, read from the OpenAPI document's `security` (each operation
//! names its one scope there), so that what the document promises is what the `Caller`
//! extractor enforces: they cannot disagree.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::Method;

/// The scopes an operation's `security` requires of the `bearer` scheme, by (method, path).
type Table = HashMap<(Method, String), Vec<String>>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let document: serde_json::Value =
            serde_json::from_str(super::openapi::json()).expect("the OpenAPI document is JSON");
        let mut table = Table::new();
        let paths = document["paths"].as_object().into_iter().flatten();
        for (path, item) in paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                    continue;
                };
                // One requirement per operation (`bearer` with its scope); none for public ones.
                let Some(scopes) = operation["security"][0]["bearer"].as_array() else {
                    continue;
                };
                let scopes = scopes
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                table.insert((method, path.clone()), scopes);
            }
        }
        table
    })
}

/// The scopes the operation `method` `path` (a route template, `/v1/sessions/{session_id}`)
/// needs; `None` for an operation the document does not secure.
pub(super) fn required(method: &Method, path: &str) -> Option<&'static [String]> {
    table()
        .get(&(method.clone(), path.to_owned()))
        .map(Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use session_core::auth::Scope;

    use super::*;

    #[test]
    fn every_secured_operation_needs_exactly_one_known_scope() {
        assert!(!table().is_empty());
        let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        for ((method, path), scopes) in table() {
            assert_eq!(scopes.len(), 1, "{method} {path}: {scopes:?}");
            assert!(
                known.contains(&scopes[0].as_str()),
                "{method} {path}: {scopes:?}"
            );
        }
    }

    #[test]
    fn reads_need_read_writes_need_write_and_revoking_needs_admin() {
        let scope = |method: Method, path: &str| required(&method, path).map(|s| s[0].as_str());
        assert_eq!(scope(Method::GET, "/v1/sessions"), Some("sessions:read"));
        assert_eq!(
            scope(
                Method::GET,
                "/v1/sessions/{session_id}/simulators/{simulator_id}/book"
            ),
            Some("sessions:read")
        );
        for (method, path) in [
            (Method::POST, "/v1/sessions"),
            (Method::DELETE, "/v1/sessions/{session_id}"),
            (Method::POST, "/v1/sessions/{session_id}/simulators"),
            (
                Method::DELETE,
                "/v1/sessions/{session_id}/simulators/{simulator_id}",
            ),
            (Method::POST, "/v1/sessions/{session_id}/tickets"),
            (Method::POST, "/v1/sessions/{session_id}/reconnect"),
        ] {
            assert_eq!(
                scope(method.clone(), path),
                Some("sessions:write"),
                "{method} {path}"
            );
        }
        assert_eq!(
            scope(Method::POST, "/v1/admin/revocations"),
            Some("sessions:admin")
        );
        assert_eq!(scope(Method::GET, "/v1/health"), None);
    }
}
