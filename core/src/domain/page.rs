//! Paging: a limit and an opaque cursor in, a page and the next cursor out.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::SessionId;
use super::validation::{self, ValidationError};

/// An opaque position in a list of sessions: clients pass back what they were given.
///
/// It wraps the last session id of the previous page; every store resumes after it. The
/// encoding hides that so it can change without breaking clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(SessionId);

impl Cursor {
    const VERSION: &'static str = "v1:";

    /// The cursor that resumes after `last`.
    pub fn after(last: &SessionId) -> Self {
        Self(last.clone())
    }

    /// The id the next page starts after.
    pub fn last_id(&self) -> &SessionId {
        &self.0
    }

    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}{}", Self::VERSION, self.0))
    }

    /// Parses a client's cursor.
    pub fn decode(field: &str, text: &str) -> Result<Self, ValidationError> {
        let invalid = || ValidationError::new(field, "is not a cursor this API returned");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let id = text.strip_prefix(Self::VERSION).ok_or_else(invalid)?;
        SessionId::parse(field, id).map(Self).map_err(|_| invalid())
    }
}

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Most items to return.
    pub limit: u32,
    /// Where to resume; `None` for the first page.
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    /// Limit when the client names none.
    pub const DEFAULT_LIMIT: u32 = 20;
    /// Highest limit accepted.
    pub const MAX_LIMIT: u32 = 100;

    /// Validates the `limit` and `cursor` query parameters.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ValidationError> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        validation::range("limit", limit, 1, Self::MAX_LIMIT)?;
        let cursor = cursor.map(|c| Cursor::decode("cursor", c)).transpose()?;
        Ok(Self { limit, cursor })
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let id = SessionId::generate();
        let cursor = Cursor::after(&id);
        assert_eq!(Cursor::decode("cursor", &cursor.encode()).unwrap(), cursor);
        for bad in ["", "!!", "djE6eHl6", &URL_SAFE_NO_PAD.encode(id.as_str())] {
            let err = Cursor::decode("cursor", bad).unwrap_err();
            assert_eq!(err.field, "cursor", "{bad}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 20);
        assert_eq!(
            PageRequest::parse(Some(0), None).unwrap_err().field,
            "limit"
        );
        assert_eq!(
            PageRequest::parse(Some(101), None).unwrap_err().field,
            "limit"
        );
    }
}
