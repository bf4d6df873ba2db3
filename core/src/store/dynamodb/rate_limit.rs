//! The DynamoDB adapter of [`RateLimitStore`]: one item per key, `RL#<key>` / `RL`, holding the
//! key's theoretical arrival time (`tat`, µs since the epoch), decided by conditional
//! `UpdateItem`s so that every process sharing the table decides exactly (see
//! `crate::ratelimit`).
//!
//! GCRA as two disjoint conditional writes, one per request when nothing races:
//! - the allowance is full (no TAT, or one in the past): `SET tat = :now + T`, when
//!   `attribute_not_exists(tat) OR tat < :now`;
//! - the TAT is within the tolerance: `SET tat = tat + T`, when `tat BETWEEN :now AND :latest`
//!   (`latest = now + (burst − 1)·T`).
//!
//! A failed condition hands back the item (`ALL_OLD`): a TAT beyond `latest` is a refusal (retry
//! after `tat − latest`, nothing written); otherwise another process moved it in between, and
//! the other case is tried, at most [`ATTEMPTS`] times. The first case is tried first: most keys
//! are idle most of the time. The item's TTL is a bound of its TAT (at most `latest + T`), so
//! DynamoDB deletes it only once the key is back at full capacity; an expired item not yet
//! deleted has a TAT in the past and reads as full.

use crate::store::ports::{MethodActions, UPDATE_ITEM};
use async_trait::async_trait;

use super::item::{Item, key, n};
use super::write::{Write, WriteError};
use super::{DynamoStore, TableSpec};
use crate::ratelimit::{Decision, Rate, gcra};
use crate::store::{RateLimitStore, StoreError};

const RATE_LIMIT_SK: &str = "RL";

/// Conditional writes tried per decision before a race is taken as a flood and refused.
const ATTEMPTS: usize = 4;

fn rate_limit_key(limit_key: &str) -> Item {
    key(format!("RL#{limit_key}"), RATE_LIMIT_SK)
}

fn tat_of(item: &Item) -> Option<i64> {
    item.get("tat")?.as_n().ok()?.parse().ok()
}

/// Epoch seconds of `us` (µs since the epoch), rounded up: the TTL attribute.
fn ttl(us: i64) -> aws_sdk_dynamodb::types::AttributeValue {
    n(gcra::ceil_secs(us))
}

/// The DynamoDB actions of each method of [`RateLimitStore`] here (checked against the calls in this
/// file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] = &[("acquire_rate", &[UPDATE_ITEM])];

#[async_trait]
impl RateLimitStore for DynamoStore {
    async fn acquire_rate(&self, limit_key: &str, rate: Rate) -> Result<Decision, StoreError> {
        let now = gcra::micros_of_millis(self.clock.now().unix_millis());
        let interval = rate.interval_us();
        let latest = rate.latest(now);
        let mut full = true;
        for _ in 0..ATTEMPTS {
            let write = if full {
                Write::update(
                    rate_limit_key(limit_key),
                    &format!("SET #tat = :next, #{} = :ttl", TableSpec::TTL),
                )
                .when("attribute_not_exists(#tat) OR #tat < :now")
                .bind(":next", n(now + interval))
                .bind(":ttl", ttl(now + interval))
            } else {
                Write::update(
                    rate_limit_key(limit_key),
                    &format!("SET #tat = #tat + :interval, #{} = :ttl", TableSpec::TTL),
                )
                .when("#tat BETWEEN :now AND :latest")
                .bind(":interval", n(interval))
                .bind(":latest", n(latest))
                .bind(":ttl", ttl(latest + interval))
            }
            .bind(":now", n(now));
            let mut old = None;
            match write
                .send_seeing_old(&self.client, &self.table, &mut old)
                .await
            {
                Ok(new) => {
                    let next = new.as_ref().and_then(tat_of).unwrap_or(now + interval);
                    return Ok(gcra::allowed(rate, next, now));
                }
                Err(WriteError::ConditionFailed) => match old.as_ref().and_then(tat_of) {
                    Some(tat) if tat > latest => return Ok(gcra::denied(rate, tat, now)),
                    Some(tat) if tat >= now => full = false,
                    _ => full = true,
                },
                Err(WriteError::Store(e)) => return Err(e),
            }
        }
        // Every attempt lost a race: the key is under heavy concurrent use, refuse this one.
        Ok(gcra::denied(rate, latest + interval, now))
    }
}
