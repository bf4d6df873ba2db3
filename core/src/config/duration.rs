//! Durations read from whole milliseconds or seconds: a setting keeps the unit its name says
//! (`push_batch_delay_ms = 10`, `SESSION_STREAMER__LINGER_SECS=30`) and the code gets a
//! `Duration`, converted here once rather than at each use.

use std::time::Duration;

use serde::{Deserialize as _, Deserializer};

/// A `Duration` from a whole number of milliseconds (`deserialize_with`).
pub fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

/// A `Duration` from a whole number of seconds (`deserialize_with`).
pub fn secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_secs)
}

/// Whole seconds of `d`, the unit of the `_secs` settings (for [`check_range`]).
pub fn whole_secs(d: Duration) -> u128 {
    u128::from(d.as_secs())
}

/// `value`, in the setting's unit (milliseconds or seconds), is within `range`.
///
/// # Errors
/// It is not: the error quotes the bounds.
pub fn check_range(
    setting: &'static str,
    value: u128,
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), super::ConfigError> {
    if range.contains(&u64::try_from(value).unwrap_or(u64::MAX)) {
        Ok(())
    } else {
        super::invalid(
            setting,
            format!("must be between {} and {}", range.start(), range.end()),
        )
    }
}
