//! Positions in a simulator's market-data stream and views of its order books.
//!
//! Prices and quantities stay scaled integers, exactly as the simulator sends them; they become
//! decimal strings only at the edge ([`decimal`]), so nothing is ever rounded through a float.

use std::fmt;
use std::str::FromStr;

use super::ValidationError;

/// A position in a stream: the stream's epoch and a gapless sequence within it. On the wire
/// (SSE `id:`, `Last-Event-ID`, the REST API) it is `<epoch>-<sequence>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    /// Changes whenever the stream restarts; sequences of different epochs are unrelated.
    pub epoch: u64,
    /// The event's number within its epoch.
    pub sequence: u64,
}

impl EventId {
    /// The spelling [`EventId::parse`] accepts, as a JSON Schema `pattern` (docs/asyncapi.json,
    /// docs/openapi.json). At most 19 digits each, so every number it allows fits a `u64`.
    pub const PATTERN: &'static str = "^[0-9]{1,19}-[0-9]{1,19}$";

    /// Parses `<epoch>-<sequence>`; errors name `field`.
    ///
    /// # Errors
    /// Not two unsigned decimal numbers joined by `-`.
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::new(
                field,
                format!("{text:?} is not an event id (`<epoch>-<sequence>`, e.g. \"17-4031\")"),
            )
        };
        let (epoch, sequence) = text.split_once('-').ok_or_else(invalid)?;
        let number = |s: &str| {
            if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            u64::from_str(s).map_err(|_| invalid())
        };
        Ok(Self {
            epoch: number(epoch)?,
            sequence: number(sequence)?,
        })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.sequence)
    }
}

/// One aggregated price level: scaled price and quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Price, in units of 10^-price_scale.
    pub price: i64,
    /// Quantity, in units of 10^-quantity_scale.
    pub quantity: i64,
}

/// The authoritative L2 book of one symbol, as of one stream position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookView {
    /// The symbol.
    pub symbol: String,
    /// The stream position the book reflects: every event up to it applied, none after.
    pub at: EventId,
    /// Decimal places of prices.
    pub price_scale: u32,
    /// Decimal places of quantities.
    pub quantity_scale: u32,
    /// Bids, best (highest) first.
    pub bids: Vec<Level>,
    /// Asks, best (lowest) first.
    pub asks: Vec<Level>,
}

/// `value · 10^-scale` as an exact decimal string (`decimal(12345, 2)` is `"123.45"`).
pub fn decimal(value: i64, scale: u32) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_reject_anything_else() {
        let id = EventId::parse("last_event_id", "17-4031").unwrap();
        assert_eq!(
            id,
            EventId {
                epoch: 17,
                sequence: 4031
            }
        );
        assert_eq!(id.to_string(), "17-4031");
        for bad in [
            "",
            "17",
            "17-",
            "-4",
            "a-1",
            "1-b",
            "1-2-3",
            "+1-2",
            "1- 2",
            "99999999999999999999-1",
            "00000000000000000001-1",
        ] {
            let err = EventId::parse("last_event_id", bad).unwrap_err();
            assert_eq!(err.field, "last_event_id", "{bad}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(12345, 2), "123.45");
        assert_eq!(decimal(5, 3), "0.005");
        assert_eq!(decimal(-5, 3), "-0.005");
        assert_eq!(decimal(0, 2), "0.00");
        assert_eq!(decimal(42, 0), "42");
        assert_eq!(decimal(i64::MIN, 4), "-922337203685477.5808");
    }
}
