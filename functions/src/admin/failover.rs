//! `session-admin region failover`: moves the home of the sessions homed in one region to
//! another (`docs/multi-region.md`, "Failover of a session's home"; the runbook is
//! docs/operations.md, "Regions and disaster recovery"). It fences the old region
//! (`REGION#<from>`), then takes each session over by one write conditional on its home and
//! epoch, failing its simulators, a bounded number at a time. Every step is idempotent: a
//! re-run moves what is left and reports the rest as already moved. It calls DynamoDB as the
//! `recovery` component, whose grants are the template's `TableRecoveryRole`.

use std::io::Write;
use std::time::Instant;

use futures_util::StreamExt as _;
use session_core::domain::{PageRequest, RegionName, Session, SessionId};
use session_core::store::{DynamoStore, Fence, HomeMove, SessionStore as _, StoreError, Takeover};

/// Sessions taken over at the same time: enough to move thousands in seconds, few enough
/// not to throttle a table that is taking a region's traffic.
const PARALLEL: usize = 16;

/// Sessions listed per page of the scan for the old region's sessions.
const PAGE: u32 = 100;

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
    /// `--from` and `--to` are the same region.
    #[error("--from and --to are both {0:?}: a failover moves sessions to another region")]
    SameRegion(String),
    /// A `--sessions` entry is not a session id.
    #[error("--sessions: {0}")]
    BadSession(String),
    /// Some sessions were found homed elsewhere than both regions (listed above it).
    #[error("{0} sessions are homed neither in the source nor in the target region (listed above)")]
    Conflicts(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The counts a run prints last.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Sessions moved by this run.
    pub moved: usize,
    /// Sessions an earlier run had moved.
    pub already: usize,
    /// Sessions homed elsewhere.
    pub conflicts: usize,
    /// Sessions gone or expired meanwhile.
    pub gone: usize,
    /// Simulators failed.
    pub failed_simulators: usize,
}

/// The region named by `flag`'s `value`.
fn region(flag: &'static str, value: &str) -> Result<RegionName, FailoverError> {
    RegionName::parse(flag, value).map_err(|e| FailoverError::BadRegion {
        flag,
        value: value.to_owned(),
        problem: e.problem,
    })
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
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let from = region("--from", &request.from)?;
    let to = region("--to", &request.to)?;
    if from == to {
        return Err(FailoverError::SameRegion(from.to_string()).into());
    }
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
    let run = Mover {
        store,
        from: &from,
        to: &to,
        primary,
        dry_run: request.dry_run,
    };
    let mut summary = Summary::default();
    if let Some(ids) = wanted {
        let mut sessions = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(session) = store.get_session(&id).await? {
                sessions.push(session);
            } else {
                summary.gone += 1;
                writeln!(out, "gone {id}")?;
            }
        }
        run.batch(sessions, &mut summary, out).await?;
    } else {
        // Page by page: a region's sessions are never all held at once. The scan resumes
        // after the last session listed, which a takeover changes but never deletes.
        let mut page = PageRequest {
            limit: PAGE,
            cursor: None,
        };
        loop {
            let found = store.sessions_homed_in(&from, primary, &page).await?;
            run.batch(found.items, &mut summary, out).await?;
            let Some(cursor) = found.next_cursor else {
                break;
            };
            page.cursor = Some(cursor);
        }
    }

    let Summary {
        moved,
        already,
        conflicts,
        gone,
        failed_simulators,
    } = summary;
    let elapsed = started.elapsed().as_millis();
    if request.dry_run {
        writeln!(
            out,
            "dry run {from}→{to}: {moved} would move, {already} already, {conflicts} conflicts, \
             {gone} gone; nothing written in {elapsed} ms"
        )?;
        return Ok(summary);
    }
    writeln!(
        out,
        "failover {from}→{to}: {moved} moved, {already} already, {conflicts} conflicts, \
         {gone} gone, {failed_simulators} simulators failed in {elapsed} ms"
    )?;
    if conflicts > 0 {
        return Err(FailoverError::Conflicts(conflicts).into());
    }
    Ok(summary)
}

/// One failover's regions and store.
struct Mover<'a> {
    store: &'a DynamoStore,
    from: &'a RegionName,
    to: &'a RegionName,
    primary: &'a RegionName,
    dry_run: bool,
}

impl Mover<'_> {
    /// Takes `sessions` over, [`PARALLEL`] at a time (or, in a dry run, says what would be
    /// done), a line each to `out`, counting in `summary`.
    async fn batch(
        &self,
        sessions: Vec<Session>,
        summary: &mut Summary,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let (from, to, primary) = (self.from, self.to, self.primary);
        let mut takeovers = futures_util::stream::iter(sessions)
            .map(|session| async move {
                let step = HomeMove {
                    from,
                    epoch: session.home_epoch,
                    to,
                    primary,
                };
                let outcome = if self.dry_run {
                    Ok(would(&step, &session))
                } else {
                    self.store.take_over_home(&session.id, &step).await
                };
                (session.id, outcome)
            })
            .buffer_unordered(PARALLEL);
        while let Some((id, outcome)) = takeovers.next().await {
            match outcome? {
                Takeover::Moved {
                    epoch,
                    failed_simulators,
                } => {
                    summary.moved += 1;
                    summary.failed_simulators += failed_simulators;
                    if self.dry_run {
                        writeln!(out, "would move {id} {from}→{to} epoch {epoch}")?;
                    } else {
                        writeln!(
                            out,
                            "moved {id} {from}→{to} epoch {epoch} \
                             ({failed_simulators} simulators failed)"
                        )?;
                    }
                }
                Takeover::AlreadyMoved { epoch } => {
                    summary.already += 1;
                    writeln!(out, "already {id} in {to} epoch {epoch}")?;
                }
                Takeover::Conflict { region, epoch } => {
                    summary.conflicts += 1;
                    let region = region.as_ref().unwrap_or(primary);
                    writeln!(out, "conflict {id} homed in {region} epoch {epoch}")?;
                }
                Takeover::Gone => {
                    summary.gone += 1;
                    writeln!(out, "gone {id}")?;
                }
            }
        }
        Ok(())
    }
}

/// What taking `session` over would do, as read now (a dry run).
fn would(step: &HomeMove<'_>, session: &Session) -> Takeover {
    if step.starts_at(session) {
        Takeover::Moved {
            epoch: step.epoch + 1,
            failed_simulators: 0,
        }
    } else if step.ended_at(session) {
        Takeover::AlreadyMoved {
            epoch: session.home_epoch,
        }
    } else {
        Takeover::Conflict {
            region: session.home_region.clone(),
            epoch: session.home_epoch,
        }
    }
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
