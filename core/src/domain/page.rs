//! Paging: a limit and a cursor in, a page and the next cursor out.

use super::SessionId;
use super::validation::{self, ValidationError};

/// A position in a list of sessions: the id of the last session of the previous page; the next
/// page holds the sessions created before it.
///
/// It is the bare id, not an opaque token, so that the OpenAPI document can state exactly which
/// cursors are accepted (the id's pattern) and every cursor it allows is a position: keyset
/// paging resumes after any id, one that was never minted included, and only within the
/// caller's own sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(SessionId);

impl Cursor {
    /// The cursor that resumes after `last`.
    pub fn after(last: &SessionId) -> Self {
        Self(last.clone())
    }

    /// The id the next page starts after.
    pub fn last_id(&self) -> &SessionId {
        &self.0
    }

    /// The text handed to clients.
    pub fn encode(&self) -> String {
        self.0.to_string()
    }

    /// Parses a client's cursor.
    ///
    /// # Errors
    /// `text` is not a session id.
    pub fn decode(field: &str, text: &str) -> Result<Self, ValidationError> {
        SessionId::parse(field, text).map(Self).map_err(|_| {
            ValidationError::new(
                field,
                "is not a cursor: pass the `next_cursor` of the previous page (a session id)",
            )
        })
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

impl Page<super::Session> {
    /// The page of `items` read one past `limit` (newest first): that extra item says whether
    /// another page follows, and the page's last item is where it starts.
    pub fn from_overfetch(mut items: Vec<super::Session>, limit: u32) -> Self {
        let limit = limit as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|s| Cursor::after(&s.id))
        } else {
            None
        };
        Self { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let id = SessionId::generate();
        let cursor = Cursor::after(&id);
        assert_eq!(Cursor::decode("cursor", &cursor.encode()).unwrap(), cursor);
        for bad in ["", "!!", "djE6eHl6", &id.as_str().to_lowercase()] {
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
