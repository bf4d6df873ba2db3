//! `session-admin region failover`: moves the home of the sessions homed in one region to
//! another (`docs/multi-region.md`, "Failover of a session's home"; the runbook is
//! docs/operations.md, "Regions and disaster recovery"). It fences the old region
//! (`REGION#<from>`), then takes each session over by one write conditional on its home and
//! epoch, failing its simulators, a bounded number at a time (`session_core::service::
//! HomeFailover`, which the local stack runs too). Every step is idempotent: a
//! re-run moves what is left and reports the rest as already moved. It calls DynamoDB as the
//! `recovery` component, whose grants are the template's `TableRecoveryRole`.
//!
//! `session-admin region reconcile` is the failback's first step: once the fenced region is
//! back and its writes made before the failure have replicated, each session homed there again
//! is such a late write (last-writer-wins put it over the takeover): listed for review, then
//! taken over again by the same takeover.

use std::io::Write;

use session_core::clock::SystemClock;
use session_core::domain::{RegionName, SessionId};
use session_core::service::{FailoverSummary, HomeFailover, HomeFailoverError};
use session_core::store::{DynamoStore, Fence, Fenced, StoreError};

/// What to fail over.
#[derive(Debug, Clone)]
pub struct FailoverRequest {
    /// The region the sessions leave (`--from`).
    pub from: String,
    /// The region taking them over (`--to`).
    pub to: String,
    /// `all`, or the sessions' ids, comma-separated (`--sessions`).
    pub sessions: String,
    /// List what would move; write nothing (not even the fence).
    pub dry_run: bool,
}

/// Why the failover did not run, or did not finish cleanly; each names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// A region name does not parse.
    #[error("{flag} {value:?} is not a region name: {problem}")]
    BadRegion {
        /// The flag (`--from`, `--to`).
        flag: &'static str,
        /// What was given.
        value: String,
        /// Why it is not a region name.
        problem: String,
    },
    /// The region the sessions leave and the one they go to are the same.
    #[error("{from_flag} and {to_flag} are both {region:?}: sessions move to another region")]
    SameRegion {
        /// The flag naming the region left (`--from`, `--region`).
        from_flag: &'static str,
        /// The flag naming the region gone to (`--to`, `--into`).
        to_flag: &'static str,
        /// The region both name.
        region: String,
    },
    /// A `--sessions` entry is not a session id.
    #[error("--sessions: {0}")]
    BadSession(String),
    /// Some sessions were found homed elsewhere than both regions (listed above it).
    #[error("{0} sessions are homed neither in the source nor in the target region (listed above)")]
    Conflicts(usize),
    /// `reconcile` of a region no failover fenced.
    #[error(
        "region {0:?} is not fenced (no REGION#{0} item): no failover took its sessions, so \
         there is nothing to reconcile"
    )]
    NotFenced(String),
    /// `reconcile` into another region than the one the failover moved the sessions to.
    #[error("region {region:?} was failed over to {by:?}, not {into:?}: reconcile into {by:?}")]
    FencedByAnother {
        /// The fenced region.
        region: String,
        /// Where its failover moved the sessions.
        by: String,
        /// What `--into` said.
        into: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The takeover stopped (the store or the output failed).
    #[error(transparent)]
    Takeover(#[from] HomeFailoverError),
}

/// The region named by `flag`'s `value`.
fn region(flag: &'static str, value: &str) -> Result<RegionName, FailoverError> {
    RegionName::parse(flag, value).map_err(|e| FailoverError::BadRegion {
        flag,
        value: value.to_owned(),
        problem: e.problem,
    })
}

/// The regions a move leaves and goes to, each with its flag: two different region names.
fn regions(
    (from_flag, from): (&'static str, &str),
    (to_flag, to): (&'static str, &str),
) -> Result<(RegionName, RegionName), FailoverError> {
    let (from, to) = (region(from_flag, from)?, region(to_flag, to)?);
    if from == to {
        return Err(FailoverError::SameRegion {
            from_flag,
            to_flag,
            region: from.to_string(),
        });
    }
    Ok((from, to))
}

/// `--sessions`: `None` for `all`, else the ids.
fn session_ids(text: &str) -> Result<Option<Vec<SessionId>>, FailoverError> {
    if text.trim() == "all" {
        return Ok(None);
    }
    text.split(',')
        .map(|id| SessionId::parse("--sessions", id.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|e| FailoverError::BadSession(e.problem))
}

/// Runs the failover on `store` (the table, as the `recovery` component); `primary` is the
/// deployment's primary region, where items without `home_region` are homed. One line a
/// session goes to `out`, then the summary.
///
/// # Errors
/// A [`FailoverError`]: bad arguments (nothing written), the store's failure, or conflicts.
pub async fn failover(
    store: &DynamoStore,
    request: &FailoverRequest,
    primary: &RegionName,
    out: &mut dyn Write,
) -> anyhow::Result<FailoverSummary> {
    let (from, to) = regions(("--from", &request.from), ("--to", &request.to))?;
    let wanted = session_ids(&request.sessions)?;

    if !request.dry_run {
        match store.fence_region(&from, &to).await? {
            Fence::Set { at } => {
                writeln!(out, "fenced {from} at {} (by {to})", at.to_rfc3339())?;
            }
            Fence::Already { at, by } => {
                writeln!(
                    out,
                    "fenced {from} already at {} (by {by})",
                    at.to_rfc3339()
                )?;
            }
        }
    }
    let summary = HomeFailover {
        store,
        from: &from,
        to: &to,
        primary,
        dry_run: request.dry_run,
        late_since: None,
        clock: &SystemClock,
    }
    .run(wanted, out)
    .await?;
    if !request.dry_run && summary.conflicts > 0 {
        return Err(FailoverError::Conflicts(summary.conflicts).into());
    }
    Ok(summary)
}

/// What to reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileRequest {
    /// The region a failover fenced, back now (`--region`).
    pub region: String,
    /// The region its sessions were moved to (`--into`).
    pub into: String,
    /// List the late writes; write nothing.
    pub dry_run: bool,
}

/// Reconciles a fenced region with the region its sessions were moved to: lists each session
/// homed in `region` again (a write `region` acknowledged before its failure that replicated
/// after the takeover) with its state, then takes it over again into `into`. The late write's
/// content stays (it was acknowledged); a write `into` made to the same session between the
/// takeover and the late write's arrival was overwritten by it, which the lines say, for a
/// person to compare with a point-in-time restore. The region stays fenced.
///
/// # Errors
/// A [`FailoverError`]: bad arguments or a region not fenced for `into` (nothing written), the
/// store's failure, or conflicts.
pub async fn reconcile(
    store: &DynamoStore,
    request: &ReconcileRequest,
    primary: &RegionName,
    out: &mut dyn Write,
) -> anyhow::Result<FailoverSummary> {
    let (region_name, into) = regions(("--region", &request.region), ("--into", &request.into))?;
    let Some(Fenced { at, by }) = store.region_fence(&region_name).await? else {
        return Err(FailoverError::NotFenced(region_name.to_string()).into());
    };
    if by != into.as_str() {
        return Err(FailoverError::FencedByAnother {
            region: region_name.to_string(),
            by,
            into: into.to_string(),
        }
        .into());
    }
    writeln!(
        out,
        "fenced {region_name} at {} (by {into})",
        at.to_rfc3339()
    )?;
    let summary = HomeFailover {
        store,
        from: &region_name,
        to: &into,
        primary,
        dry_run: request.dry_run,
        late_since: Some(at),
        clock: &SystemClock,
    }
    .run(None, out)
    .await?;
    let count = summary.moved + summary.conflicts;
    writeln!(
        out,
        "reconcile {region_name}→{into}: {count} late writes; {region_name} stays fenced \
         (delete REGION#{region_name} / FENCE to let it take writes again)"
    )?;
    if !request.dry_run && summary.conflicts > 0 {
        return Err(FailoverError::Conflicts(summary.conflicts).into());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_all_or_a_list_of_ids_and_a_bad_id_is_named() {
        assert!(session_ids("all").unwrap().is_none());
        let id = SessionId::generate();
        let two = format!("{id}, {id}");
        assert_eq!(session_ids(&two).unwrap().unwrap().len(), 2);
        let err = session_ids("ses_nope").unwrap_err().to_string();
        assert!(err.starts_with("--sessions: must be \"ses_\""), "{err}");
    }

    #[test]
    fn a_bad_region_name_is_named_with_its_flag() {
        let err = region("--to", "EU_WEST").unwrap_err().to_string();
        assert!(
            err.starts_with("--to \"EU_WEST\" is not a region name"),
            "{err}"
        );
    }
}
