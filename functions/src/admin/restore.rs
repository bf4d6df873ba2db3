//! `session-admin table restore`: the point-in-time recovery drill (docs/operations.md,
//! "Regions and disaster recovery"). Restores the table as it was at a moment (or at the latest
//! restorable one) into a new table, waits for it, gives it what a restore does not carry over
//! (time to live, point-in-time recovery, deletion protection), counts both tables' items and
//! says what to deploy to repoint the stack. It calls DynamoDB as the `recovery` component,
//! whose grants are the template's `TableRecoveryRole`.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{
    PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, Select, SseSpecification, SseType,
    TimeToLiveSpecification,
};
use session_core::store::TableSpec;

/// What to restore, from where, to where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The table to restore from (it must have point-in-time recovery on).
    pub source: String,
    /// The new table (it must not exist).
    pub target: String,
    /// The moment to restore (RFC 3339); `None`: the latest restorable moment.
    pub at: Option<String>,
    /// How long to wait for the new table to become `ACTIVE` (a large table takes hours).
    pub wait: Duration,
}

/// What the drill did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The moment restored, RFC 3339, or `latest restorable`.
    pub restored_at: String,
    /// Items in the new table.
    pub target_items: u64,
    /// Items in the source table now (differs when the source was written since).
    pub source_items: u64,
}

/// Why the drill stopped; each names the table or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// `--at` is not an RFC 3339 date-time.
    #[error("--at {0:?} is not an RFC 3339 date-time (e.g. 2026-12-05T06:00:00Z)")]
    BadTime(String),
    /// The source and target are the same table.
    #[error("--target {0:?} is the source table: a restore makes a new table")]
    SameTable(String),
    /// The source table does not exist (here, with these credentials).
    #[error("source table {0:?} does not exist in this account and region")]
    SourceNotFound(String),
    /// The source table has point-in-time recovery off: there is nothing to restore from.
    #[error("source table {0:?} has point-in-time recovery off: nothing to restore from")]
    NoRecovery(String),
    /// The target table exists already.
    #[error("target table {0:?} exists already: name a new table")]
    TargetExists(String),
    /// The new table did not become `ACTIVE` in time (it may still be restoring).
    #[error("target table {table:?} is not ACTIVE after {waited:?} (still restoring?): {cause}")]
    NotActive {
        /// The new table.
        table: String,
        /// How long the drill waited.
        waited: Duration,
        /// The waiter's answer.
        cause: String,
    },
    /// A DynamoDB call failed.
    #[error("{operation} on {table:?}: {cause}")]
    Aws {
        /// The operation.
        operation: &'static str,
        /// The table it was on.
        table: String,
        /// DynamoDB's answer.
        cause: String,
    },
}

fn aws<E, R>(operation: &'static str, table: &str) -> impl FnOnce(SdkError<E, R>) -> RestoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let table = table.to_owned();
    move |e| RestoreError::Aws {
        operation,
        table,
        cause: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

/// `--at`'s moment: RFC 3339, `Z` or an offset.
fn moment(at: &str) -> Result<DateTime, RestoreError> {
    DateTime::from_str(at, DateTimeFormat::DateTimeWithOffset)
        .map_err(|_| RestoreError::BadTime(at.to_owned()))
}

/// Runs the drill with `client` (as the `recovery` component); `progress` gets a line per step.
///
/// # Errors
/// A [`RestoreError`] naming the table or value at fault. Nothing is created unless the
/// restore call itself succeeded.
pub async fn restore(
    client: &Client,
    request: &RestoreRequest,
    progress: &mut dyn FnMut(&str),
) -> Result<RestoreReport, RestoreError> {
    let (source, target) = (request.source.as_str(), request.target.as_str());
    if source == target {
        return Err(RestoreError::SameTable(target.to_owned()));
    }
    let at = request.at.as_deref().map(moment).transpose()?;

    let described = client
        .describe_table()
        .table_name(source)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(s) if s.is_resource_not_found_exception() => {
                RestoreError::SourceNotFound(source.to_owned())
            }
            _ => aws("DescribeTable", source)(e),
        })?;
    let table = described
        .table
        .ok_or_else(|| RestoreError::SourceNotFound(source.to_owned()))?;
    let backups = client
        .describe_continuous_backups()
        .table_name(source)
        .send()
        .await
        .map_err(aws("DescribeContinuousBackups", source))?;
    let recovery_on = backups
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
        .and_then(|p| p.point_in_time_recovery_status)
        == Some(PointInTimeRecoveryStatus::Enabled);
    if !recovery_on {
        return Err(RestoreError::NoRecovery(source.to_owned()));
    }

    // The new table is encrypted with the source's key (a restore defaults to an AWS owned
    // key), so the stack's roles, which may use only that key, can read it.
    let key = table
        .sse_description
        .and_then(|d| d.kms_master_key_arn)
        .map(|key| {
            SseSpecification::builder()
                .enabled(true)
                .sse_type(SseType::Kms)
                .kms_master_key_id(key)
                .build()
        });
    let restored_at = request
        .at
        .clone()
        .unwrap_or_else(|| "latest restorable".to_owned());
    progress(&format!("restoring {source} ({restored_at}) into {target}"));
    client
        .restore_table_to_point_in_time()
        .source_table_name(source)
        .target_table_name(target)
        .set_restore_date_time(at)
        .set_use_latest_restorable_time(at.is_none().then_some(true))
        .set_sse_specification_override(key)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(s) if s.is_table_already_exists_exception() => {
                RestoreError::TargetExists(target.to_owned())
            }
            _ => aws("RestoreTableToPointInTime", source)(e),
        })?;

    progress(&format!("waiting for {target} to be ACTIVE"));
    client
        .wait_until_table_exists()
        .table_name(target)
        .wait(request.wait)
        .await
        .map_err(|e| RestoreError::NotActive {
            table: target.to_owned(),
            waited: request.wait,
            cause: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
        })?;

    progress(&format!(
        "time to live, point-in-time recovery, deletion protection on {target}"
    ));
    settle(
        client,
        target,
        table.deletion_protection_enabled == Some(true),
    )
    .await?;

    progress(&format!("counting items in {target} and {source}"));
    let target_items = count(client, target).await?;
    let source_items = count(client, source).await?;
    Ok(RestoreReport {
        restored_at,
        target_items,
        source_items,
    })
}

/// Time to live, point-in-time recovery and (as on the source) deletion protection: a restored
/// table has none of them.
async fn settle(client: &Client, target: &str, protect: bool) -> Result<(), RestoreError> {
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(TableSpec::TTL)
        .enabled(true)
        .build()
        .unwrap_or_else(|_| unreachable!("both fields are set"));
    client
        .update_time_to_live()
        .table_name(target)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(aws("UpdateTimeToLive", target))?;
    let pitr = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(true)
        .build()
        .unwrap_or_else(|_| unreachable!("the field is set"));
    client
        .update_continuous_backups()
        .table_name(target)
        .point_in_time_recovery_specification(pitr)
        .send()
        .await
        .map_err(aws("UpdateContinuousBackups", target))?;
    if protect {
        client
            .update_table()
            .table_name(target)
            .deletion_protection_enabled(true)
            .send()
            .await
            .map_err(aws("UpdateTable", target))?;
    }
    Ok(())
}

/// The table's items, by a paginated `Select: COUNT` scan (reads every item once).
async fn count(client: &Client, table: &str) -> Result<u64, RestoreError> {
    let mut pages = client
        .scan()
        .table_name(table)
        .select(Select::Count)
        .into_paginator()
        .send();
    let mut items = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("Scan", table))?;
        items += u64::try_from(page.count).unwrap_or(0);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_is_rfc_3339_in_utc_or_with_an_offset_and_nothing_else() {
        let utc = moment("2026-12-05T05:40:00Z").unwrap();
        assert_eq!(moment("2026-12-05T06:40:00+01:00").unwrap(), utc);
        assert_eq!(utc.secs(), 1_796_449_200);
        for bad in ["yesterday", "2026-12-05", "2026-12-05 05:40:00"] {
            assert!(
                matches!(moment(bad), Err(RestoreError::BadTime(b)) if b == bad),
                "{bad}"
            );
        }
    }
}
