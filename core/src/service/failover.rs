//! The takeover step of a failover of sessions' home region (`docs/multi-region.md`, "Failover
//! of a session's home"): every session homed in one region (or the ones named) moved to
//! another by one write conditional on its home and epoch, a bounded number at a time, a line
//! each. One implementation, run by `session-admin region failover` on the table (after it
//! fences the old region) and by the local stack's `/_local/regions/{name}/failover` on the
//! surviving region's replica.

use std::io::Write;
use std::time::Instant;

use futures_util::StreamExt as _;

use crate::clock::Clock;
use crate::domain::{PageRequest, RegionName, Session, SessionId};
use crate::store::{HomeMove, Store, StoreError, Takeover};

/// Sessions taken over at the same time: enough to move thousands in seconds, few enough not
/// to throttle a table that is taking a region's traffic.
const PARALLEL: usize = 16;

/// Sessions listed per page of the scan for the old region's sessions.
const PAGE: u32 = 100;

/// One failover's takeover: the store it writes (the surviving region's) and the regions.
#[derive(Debug, Clone, Copy)]
pub struct HomeFailover<'a> {
    /// The store, as the region taking the sessions over sees it.
    pub store: &'a dyn Store,
    /// The time, for the age of the old home's last beat.
    pub clock: &'a dyn Clock,
    /// The region the sessions leave.
    pub from: &'a RegionName,
    /// The region taking them over.
    pub to: &'a RegionName,
    /// The primary region: items without `home_region` are homed there.
    pub primary: &'a RegionName,
    /// List what would move; write nothing.
    pub dry_run: bool,
    /// A reconcile (`session-admin region reconcile`): `from` was fenced at this instant, so
    /// every session found homed there is a write it acknowledged before its failure that
    /// replicated after the takeover. Each gets a line saying so, with its state, before it is
    /// taken over again.
    pub late_since: Option<crate::domain::Timestamp>,
}

/// The counts a run ends with.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FailoverSummary {
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
    /// How old the old home's last beat seen here was when the takeover began, in
    /// milliseconds: what the old home acknowledged in that time may be missing here (the RPO
    /// of this failover); `None` if no beat of it was seen (or in a reconcile).
    pub old_home_beat_age_ms: Option<u64>,
}

/// Why a takeover run stopped.
#[derive(Debug, thiserror::Error)]
pub enum HomeFailoverError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The report could not be written.
    #[error("cannot write the failover's report")]
    Output(#[from] std::io::Error),
}

impl HomeFailover<'_> {
    /// Takes over `sessions` (`None`: every session homed in `from`, page by page), a line a
    /// session to `out` (generic: a `Send` writer keeps the future `Send`) (`moved`, `already`, `conflict`, `gone`), then the summary line.
    ///
    /// # Errors
    /// The store failed (what was moved stays moved: a re-run resumes), or `out` did.
    pub async fn run<W: Write + ?Sized>(
        &self,
        sessions: Option<Vec<SessionId>>,
        out: &mut W,
    ) -> Result<FailoverSummary, HomeFailoverError> {
        let started = Instant::now();
        let mut summary = FailoverSummary::default();
        if self.late_since.is_none() {
            summary.old_home_beat_age_ms = self.old_home_beat_age(out).await?;
        }
        if let Some(ids) = sessions {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(session) = self.store.get_session(&id).await? {
                    found.push(session);
                } else {
                    summary.gone += 1;
                    writeln!(out, "gone {id}")?;
                }
            }
            self.batch(found, &mut summary, out).await?;
        } else {
            // Page by page: a region's sessions are never all held at once. The scan resumes
            // after the last session listed, which a takeover changes but never deletes.
            let mut page = PageRequest {
                limit: PAGE,
                cursor: None,
            };
            loop {
                let found = self
                    .store
                    .sessions_homed_in(self.from, self.primary, &page)
                    .await?;
                self.batch(found.items, &mut summary, out).await?;
                let Some(cursor) = found.next_cursor else {
                    break;
                };
                page.cursor = Some(cursor);
            }
        }
        let FailoverSummary {
            moved,
            already,
            conflicts,
            gone,
            failed_simulators,
            ..
        } = summary;
        let (from, to) = (self.from, self.to);
        let elapsed = started.elapsed().as_millis();
        if self.dry_run {
            writeln!(
                out,
                "dry run {from}→{to}: {moved} would move, {already} already, {conflicts} \
                 conflicts, {gone} gone; nothing written in {elapsed} ms"
            )?;
        } else {
            writeln!(
                out,
                "failover {from}→{to}: {moved} moved, {already} already, {conflicts} conflicts, \
                 {gone} gone, {failed_simulators} simulators failed in {elapsed} ms"
            )?;
        }
        Ok(summary)
    }

    /// The age of the last beat of `from` this store holds, with a line saying what it means
    /// (`docs/multi-region.md`, "How stale a replica is").
    async fn old_home_beat_age<W: Write + ?Sized>(
        &self,
        out: &mut W,
    ) -> Result<Option<u64>, HomeFailoverError> {
        let from = self.from;
        let Some(beat) = self.store.last_beat(from).await? else {
            writeln!(
                out,
                "rpo: no beat of {from} seen here: what it acknowledged last cannot be bounded"
            )?;
            return Ok(None);
        };
        let age = u64::try_from(self.clock.now().since(beat).as_millis()).unwrap_or(u64::MAX);
        writeln!(
            out,
            "rpo: {from}'s last beat seen here is {age} ms old ({}): what {from} acknowledged \
             since may be missing here until it is back and reconciled",
            beat.to_rfc3339()
        )?;
        Ok(Some(age))
    }

    /// Takes `sessions` over, [`PARALLEL`] at a time (or, in a dry run, says what would be
    /// done), a line each to `out`, counting in `summary`.
    async fn batch<W: Write + ?Sized>(
        &self,
        sessions: Vec<Session>,
        summary: &mut FailoverSummary,
        out: &mut W,
    ) -> Result<(), HomeFailoverError> {
        let (from, to, primary) = (self.from, self.to, self.primary);
        if let Some(since) = self.late_since {
            for session in &sessions {
                writeln!(
                    out,
                    "late {} homed in {from} epoch {}: status {}, version {}; what {to} wrote \
                     to it since {} was overwritten",
                    session.id,
                    session.home_epoch,
                    session.status.as_str(),
                    session.version,
                    since.to_rfc3339()
                )?;
            }
        }
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
