//! Why a step failed, in words for the `FAILED at step "...": ...` line: what was asked of
//! which URL, and the answer or the lack of one.

use std::time::Duration;

use url::Url;

use crate::client::TlsError;
use crate::endpoints::EndpointsError;
use crate::sequence::SequenceError;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The endpoints file cannot be used.
    #[error(transparent)]
    Endpoints(#[from] EndpointsError),
    /// The TLS client cannot be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No answer: connection refused, a name that does not resolve, TLS refused, a reset.
    #[error("{reason} ({method} {url})")]
    Unreachable {
        /// `GET`, `POST`, `WebSocket`...
        method: &'static str,
        /// The URL, its ticket hidden.
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// An answer with another status than the one expected.
    #[error("HTTP {status} ({method} {url}): {detail}")]
    Status {
        /// The request's method.
        method: &'static str,
        /// The URL, its ticket hidden.
        url: String,
        /// The status.
        status: u16,
        /// The problem document's type and detail, or the body's start.
        detail: String,
    },
    /// An answer whose body is not what the API documents.
    #[error("unexpected answer ({method} {url}): {reason}")]
    Answer {
        /// The request's method.
        method: &'static str,
        /// The URL, its ticket hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time ran out during the step (the run's, or a clean-up call's).
    #[error("no result in time: the run may take {} s (--timeout)", .0.as_secs())]
    Timeout(Duration),
    /// A stream's events are not in sequence.
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// The service answered, but not as it should have.
    #[error("{0}")]
    Check(String),
}

impl StepError {
    /// A failed request: its innermost cause, which says the most (`Connection refused`).
    pub(crate) fn unreachable(
        method: &'static str,
        url: &Url,
        error: &(dyn std::error::Error + 'static),
    ) -> Self {
        let mut innermost = error;
        while let Some(source) = innermost.source() {
            innermost = source;
        }
        Self::Unreachable {
            method,
            url: shown(url),
            reason: innermost.to_string(),
        }
    }
}

/// `url` as printed: a ticket in its query is a credential until used, so it is hidden.
pub(crate) fn shown(url: &Url) -> String {
    let text = url.as_str();
    let Some((head, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|pair| {
            if pair.starts_with("ticket=") {
                "ticket=…"
            } else {
                pair
            }
        })
        .collect();
    format!("{head}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_in_a_url_is_hidden_and_the_rest_kept() {
        let url = Url::parse("wss://h/prod?ticket=secret&last_event_id=3-7").unwrap();
        let text = shown(&url);
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(text, "wss://h/prod?ticket=…&last_event_id=3-7");
        let plain = Url::parse("http://h/v1/sessions").unwrap();
        assert_eq!(shown(&plain), "http://h/v1/sessions");
    }
}
