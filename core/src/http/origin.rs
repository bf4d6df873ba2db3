//! The `Origin` allow-list of the browser-facing connection routes (the WebSocket `$connect`,
//! the streamer's SSE stream): a request a browser makes from a page not on the list is refused
//! before its credential is looked at.
//!
//! Browsers send `Origin` on every WebSocket handshake and on every cross-origin fetch or
//! `EventSource`, so a cross-site page cannot open a connection; clients that are not browsers
//! (curl, websocat, server-side tools) send none and are let through to the credential check.
//! An empty list allows no `Origin` at all: the safe side for a deployment that forgot it.

use axum::http::HeaderMap;
use axum::http::header::ORIGIN;

/// A request carried an `Origin` that is not on the allow-list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("origin {0:?} may not connect")]
pub struct OriginRefused(pub String);

/// Checks the `Origin` header(s) in `headers` against `allowed` (exact matches, as CORS).
///
/// # Errors
/// An `Origin` (any of them, if repeated) is not in `allowed`; the error names it.
pub fn check_origin(allowed: &[String], headers: &HeaderMap) -> Result<(), OriginRefused> {
    for value in headers.get_all(ORIGIN) {
        let origin = String::from_utf8_lossy(value.as_bytes());
        if !allowed.iter().any(|a| *a == origin) {
            return Err(OriginRefused(origin.into_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origins: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for origin in origins {
            headers.append(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn a_request_without_origin_is_not_a_browsers_and_passes() {
        assert_eq!(check_origin(&[], &headers(&[])), Ok(()));
    }

    #[test]
    fn a_listed_origin_passes_and_any_other_is_refused_by_name() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert_eq!(
            check_origin(&allowed, &headers(&["https://app.example.com"])),
            Ok(())
        );
        for other in [
            "https://evil.example",
            "https://app.example.com.evil.example",
            "http://app.example.com",
            "null",
        ] {
            assert_eq!(
                check_origin(&allowed, &headers(&[other])),
                Err(OriginRefused(other.to_owned()))
            );
        }
    }

    #[test]
    fn an_empty_list_refuses_every_origin() {
        assert_eq!(
            check_origin(&[], &headers(&["https://app.example.com"])),
            Err(OriginRefused("https://app.example.com".to_owned()))
        );
    }

    #[test]
    fn one_foreign_origin_among_several_is_refused() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(
            check_origin(
                &allowed,
                &headers(&["https://app.example.com", "https://evil.example"])
            )
            .is_err()
        );
    }
}
