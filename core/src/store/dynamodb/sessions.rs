//! The DynamoDB adapter of [`SessionStore`]: one item per session (`SESSION#<id>` /
//! `SESSION`), listed by owner through GSI1; the owner's open-session count is the quota item
//! (`OWNER#<user>` / `QUOTA`, or `QUOTA#<region>` in a region other than the primary: see
//! `item::counters_key`), changed in the same transaction as the session it counts.

use crate::store::ports::{GET_ITEM, MethodActions, PUT_ITEM, QUERY, SCAN, UPDATE_ITEM};
use async_trait::async_trait;

use super::item::{
    Item, SESSION_SK, counters_key, counters_region, key, ms, n, owner_pk, s, session_from,
    session_item, session_pk,
};
use super::write::{Write, classify};
use super::{DynamoStore, LIVE, TableSpec, applied};
use crate::domain::{
    Page, PageRequest, RegionName, Session, SessionId, SessionStatus, SimulatorStatus, UserId,
};
use crate::store::failover::found;
use crate::store::{
    HomeFence, HomeMove, Quota, REGION_FAILOVER_REASON, SessionStore, SimulatorStore, StoreError,
    Takeover,
};

impl DynamoStore {
    /// The owner's sessions (expired ones included) with ids below `before`, newest first.
    async fn query_owner_sessions(
        &self,
        owner: &UserId,
        before: Option<&SessionId>,
        limit: i32,
    ) -> Result<(Vec<Session>, bool), StoreError> {
        let condition = if before.is_some() {
            "#GSI1PK = :owner AND #GSI1SK < :before"
        } else {
            "#GSI1PK = :owner"
        };
        let mut query = self
            .client
            .query()
            .table_name(self.table.as_ref())
            .index_name(TableSpec::GSI1)
            .key_condition_expression(condition)
            .expression_attribute_names("#GSI1PK", TableSpec::GSI1PK)
            .expression_attribute_values(":owner", s(owner_pk(owner)))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(before) = before {
            query = query
                .expression_attribute_names("#GSI1SK", TableSpec::GSI1SK)
                .expression_attribute_values(":before", s(before.as_str()));
        }
        let out = query.send().await.map_err(classify)?;
        let more = out.last_evaluated_key.is_some();
        let sessions = out
            .items
            .unwrap_or_default()
            .iter()
            .map(session_from)
            .collect::<Result<_, _>>()?;
        Ok((sessions, more))
    }

    /// Closes the owner's active sessions that have expired, releasing their quota slots.
    /// Returns how many were released.
    async fn purge_expired_sessions(&self, owner: &UserId) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut released = 0;
        let mut before: Option<SessionId> = None;
        loop {
            let (sessions, more) = self
                .query_owner_sessions(owner, before.as_ref(), 100)
                .await?;
            for session in &sessions {
                if session.status == SessionStatus::Active && session.is_expired(now) {
                    // An update, not a put: the item's counters (`event_rate` above all) stay.
                    let close = Write::update(
                        key(session_pk(&session.id), SESSION_SK),
                        "SET #status = :closed, #closed_at = :closed_at, #version = :next_version",
                    )
                    .bind(":closed", s(SessionStatus::Closed.as_str()))
                    .bind(":closed_at", ms(session.expires_at))
                    .bind(":next_version", n(session.version + 1))
                    .bind(":version", n(session.version))
                    .bind(":active", s(SessionStatus::Active.as_str()));
                    let close = self.homed_here(when_home_unchanged(
                        close,
                        "#version = :version AND #status = :active",
                        session,
                    ));
                    let writes = vec![close, release_session_slot(self.counters_key(owner))];
                    if self.transact(writes).await?.is_ok() {
                        released += 1;
                    }
                }
            }
            before = sessions.last().map(|s| s.id.clone());
            if !more || before.is_none() {
                return Ok(released);
            }
        }
    }
}

/// `write` under `condition` and (`docs/multi-region.md`) on the item's home still being the
/// one `session` was read with, so a region the session moved away from (a failover raised
/// `home_epoch`) cannot write it. An item without `home_region` is homed in the primary region
/// at epoch 1 (items written before regions existed, and every item of a single-region
/// deployment): a failover sets the attribute, which fences those writes too.
fn when_home_unchanged(write: Write, condition: &str, session: &Session) -> Write {
    match &session.home_region {
        Some(region) => write
            .when(&format!(
                "{condition} AND #home_region = :home_region AND #home_epoch = :home_epoch"
            ))
            .bind(":home_region", s(region.as_str()))
            .bind(":home_epoch", n(session.home_epoch)),
        None => write.when(&format!(
            "{condition} AND attribute_not_exists(#home_region)"
        )),
    }
}

impl DynamoStore {
    /// Fails the session's starting and running simulators ([`REGION_FAILOVER_REASON`]), each
    /// by its own conditional write (which releases its quota slot and event budget): the
    /// simulator transitions put whole items and settle the session's counters in their own
    /// transactions, so they cannot join the home's write. Run before that write, while the
    /// session is still homed where the simulators ran, so a re-run after a crash fails what
    /// was left and never a simulator the new home started. Returns how many it failed.
    async fn fail_simulators_for_failover(
        &self,
        id: &SessionId,
        from: &RegionName,
        primary: &RegionName,
    ) -> Result<usize, StoreError> {
        // The takeover is the one write a region other than the home makes: it writes as the
        // old home, whose counters the simulators' releases must reach.
        let store = self
            .clone()
            .fenced_by(Some(HomeFence::new(from.clone(), primary.clone())));
        let mut failed = 0;
        for simulator in store.list_simulators(id).await? {
            let mut current = Some(simulator);
            // A simulator changing under us (a backend callback) is re-read once.
            for _ in 0..2 {
                let Some(simulator) = current.take() else {
                    break;
                };
                if !matches!(
                    simulator.status,
                    SimulatorStatus::Starting | SimulatorStatus::Running
                ) {
                    break;
                }
                let reason = Some(REGION_FAILOVER_REASON.to_owned());
                let Ok(next) =
                    simulator.transition(SimulatorStatus::Failed, reason, self.clock.now())
                else {
                    break;
                };
                match store.update_simulator(&simulator, &next).await {
                    Ok(()) => failed += 1,
                    Err(StoreError::Conflict { .. }) => {
                        current = store.get_simulator(id, &simulator.id).await?;
                    }
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(failed)
    }

    /// The session as stored now, unless gone or expired.
    async fn live_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        SessionStore::get_session(self, id).await
    }
}

/// Frees one of the owner's open-session slots (`counters`: the key of the region's counters).
fn release_session_slot(counters: Item) -> Write {
    Write::update(counters, "SET #open_sessions = #open_sessions - :one")
        .when("#open_sessions > :zero")
        .bind(":one", n(1))
        .bind(":zero", n(0))
}

/// The DynamoDB actions of each method of [`SessionStore`] here (checked against the calls in this
/// file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] = &[
    // The quota's purge of expired sessions queries and updates.
    ("create_session", &[PUT_ITEM, UPDATE_ITEM, QUERY]),
    ("get_session", &[GET_ITEM]),
    ("list_sessions", &[QUERY]),
    // A failed condition reads the item to tell gone from conflict.
    ("update_session", &[UPDATE_ITEM, GET_ITEM]),
    // A failover (rare, an operator's): a filtered scan of the whole table.
    ("sessions_homed_in", &[SCAN]),
    // Reads the home, fails the simulators (`update_simulator`'s actions), moves the home.
    ("take_over_home", &[GET_ITEM, QUERY, PUT_ITEM, UPDATE_ITEM]),
];

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &Session, max_open: u32) -> Result<(), StoreError> {
        for attempt in 0..2 {
            let writes = vec![
                Write::put(session_item(session)).when("attribute_not_exists(#PK)"),
                Write::update(
                    self.counters_key(&session.owner),
                    "SET #open_sessions = if_not_exists(#open_sessions, :zero) + :one",
                )
                .when("attribute_not_exists(#open_sessions) OR #open_sessions < :max")
                .bind(":zero", n(0))
                .bind(":one", n(1))
                .bind(":max", n(max_open)),
            ];
            match self.transact(writes).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.at(0) => {
                    return Err(StoreError::AlreadyExists {
                        entity: "session",
                        id: session.id.to_string(),
                    });
                }
                Err(_) => {
                    if attempt == 0 && self.purge_expired_sessions(&session.owner).await? > 0 {
                        continue;
                    }
                    break;
                }
            }
        }
        Err(StoreError::QuotaExceeded {
            quota: Quota::SessionsPerUser,
            limit: max_open,
        })
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        let Some(item) = self.get(key(session_pk(id), SESSION_SK)).await? else {
            return Ok(None);
        };
        let session = session_from(&item)?;
        Ok((!session.is_expired(now)).then_some(session))
    }

    async fn list_sessions(
        &self,
        owner: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        let now = self.clock.now();
        let wanted = page.limit as usize + 1;
        let mut items = Vec::with_capacity(wanted);
        let mut before = page.cursor.as_ref().map(|c| c.last_id().clone());
        // Expired sessions are filtered here, so a query may return fewer live ones than asked:
        // keep reading until the page is full or the index is exhausted.
        loop {
            let (sessions, more) = self
                .query_owner_sessions(owner, before.as_ref(), wanted as i32)
                .await?;
            before = sessions.last().map(|s| s.id.clone());
            items.extend(sessions.into_iter().filter(|s| !s.is_expired(now)));
            if items.len() >= wanted || !more || before.is_none() {
                break;
            }
        }
        items.truncate(wanted);
        Ok(Page::from_overfetch(items, page.limit))
    }

    async fn update_session(&self, previous: &Session, next: &Session) -> Result<(), StoreError> {
        let now = self.clock.now();
        // The counters (`active_simulators`, `connections`) live on the session item, so a
        // change sets the session's own attributes; it never puts the whole item.
        let mut set = vec![
            "#status = :status",
            "#version = :next_version",
            "#expires_at = :expires_at",
            "#ttl = :ttl",
        ];
        let mut remove = Vec::new();
        let mut values = vec![
            (":status", s(next.status.as_str())),
            (":next_version", n(next.version)),
            (":expires_at", ms(next.expires_at)),
            (":ttl", n(next.expires_at.unix_seconds_ceil())),
        ];
        let optional = [
            ("#closed_at", ":closed_at", next.closed_at.map(ms)),
            ("#name", ":name", next.name.as_ref().map(|v| s(v.as_str()))),
            (
                "#metadata",
                ":metadata",
                next.metadata.as_ref().map(|m| s(m.to_json())),
            ),
        ];
        let mut assignments = Vec::new();
        for (attribute, placeholder, value) in optional {
            match value {
                Some(value) => {
                    assignments.push(format!("{attribute} = {placeholder}"));
                    values.push((placeholder, value));
                }
                None => remove.push(attribute),
            }
        }
        set.extend(assignments.iter().map(String::as_str));
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression = format!("{expression} REMOVE {}", remove.join(", "));
        }
        let mut change = self
            .homed_here(when_home_unchanged(
                Write::update(key(session_pk(&previous.id), SESSION_SK), &expression),
                &format!("{LIVE} AND #version = :version"),
                previous,
            ))
            .bind(":now", ms(now))
            .bind(":version", n(previous.version));
        for (placeholder, value) in values {
            change = change.bind(placeholder, value);
        }
        let releases_slot =
            previous.status == SessionStatus::Active && next.status != SessionStatus::Active;
        let applied = if releases_slot {
            let release = release_session_slot(self.counters_key(&previous.owner));
            match self.transact(vec![change.clone(), release]).await? {
                Ok(()) => true,
                // This region's counter has no slot to free (the session counts elsewhere, e.g.
                // in an unfenced store's view of a moved session): the close still applies.
                Err(c) if !c.at(0) && c.at(1) => applied(self.write(change).await)?,
                Err(_) => false,
            }
        } else {
            applied(self.write(change).await)?
        };
        if applied {
            return Ok(());
        }
        if let Some(elsewhere) = self.not_home(&previous.id).await? {
            return Err(elsewhere);
        }
        Err(self
            .missing_or_conflict(
                "session",
                previous.id.as_str(),
                key(session_pk(&previous.id), SESSION_SK),
            )
            .await)
    }

    async fn sessions_homed_in(
        &self,
        region: &RegionName,
        primary: &RegionName,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        // A Scan with a filter: only a failover (a disaster-recovery operation, run by an
        // operator, rarely) lists sessions by home, which no index is worth keeping for.
        // Paginated: each call reads until its page is full, resuming after the cursor's item.
        let now = self.clock.now();
        let wanted = page.limit as usize + 1;
        let home = if region == primary {
            "(#home_region = :region OR attribute_not_exists(#home_region))"
        } else {
            "#home_region = :region"
        };
        let mut start = page
            .cursor
            .as_ref()
            .map(|c| key(session_pk(c.last_id()), SESSION_SK));
        let mut items = Vec::with_capacity(wanted);
        loop {
            let out = self
                .client
                .scan()
                .table_name(self.table.as_ref())
                .filter_expression(format!("#SK = :session AND {home}"))
                .expression_attribute_names("#SK", TableSpec::SK)
                .expression_attribute_names("#home_region", super::item::HOME_REGION)
                .expression_attribute_values(":session", s(SESSION_SK))
                .expression_attribute_values(":region", s(region.as_str()))
                .set_exclusive_start_key(start.take())
                .limit(500)
                .send()
                .await
                .map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                let session = session_from(&item)?;
                if !session.is_expired(now) {
                    items.push(session);
                }
            }
            start = out.last_evaluated_key;
            if items.len() >= wanted || start.is_none() {
                break;
            }
        }
        items.truncate(wanted);
        Ok(Page::from_overfetch(items, page.limit))
    }

    async fn take_over_home(
        &self,
        id: &SessionId,
        step: &HomeMove<'_>,
    ) -> Result<Takeover, StoreError> {
        let Some(mut stored) = self.live_session(id).await?.filter(|s| step.starts_at(s)) else {
            return Ok(found(step, self.live_session(id).await?.as_ref()));
        };
        let failed_simulators = self
            .fail_simulators_for_failover(id, step.from, step.primary)
            .await?;
        // An item without `home_region` is homed in the primary region at epoch 1. (DynamoDB
        // refuses redundant parentheses, so the single-case condition has none.)
        let home = "#home_region = :from AND #home_epoch = :epoch";
        let condition = if step.from == step.primary && step.epoch == 1 {
            format!("attribute_exists(#PK) AND (({home}) OR attribute_not_exists(#home_region))")
        } else {
            format!("attribute_exists(#PK) AND {home}")
        };
        let epoch = step.epoch + 1;
        // An open session's slot moves with it, in the move's transaction: minus on the old
        // home's counters, plus on the new home's, unconditionally (a failover is never refused
        // for quota). The status is part of the condition so a close racing the move cannot
        // release the slot twice. Three tries: the session changed (re-read), or the old
        // counter had nothing to give (moved without the minus).
        let mut release_old = true;
        for _ in 0..3 {
            let active = stored.status == SessionStatus::Active;
            let status = if active {
                "#status = :active"
            } else {
                "#status <> :active"
            };
            let take = Write::update(
                key(session_pk(id), SESSION_SK),
                "SET #home_region = :to, #home_epoch = :next_epoch, #version = #version + :one",
            )
            .when(&format!("{condition} AND {status}"))
            .bind(":to", s(step.to.as_str()))
            .bind(":next_epoch", n(epoch))
            .bind(":one", n(1))
            .bind(":from", s(step.from.as_str()))
            .bind(":epoch", n(step.epoch))
            .bind(":active", s(SessionStatus::Active.as_str()));
            let mut writes = vec![take];
            if active {
                let owner = &stored.owner;
                if release_old {
                    writes.push(release_session_slot(counters_key(
                        owner,
                        counters_region(step.from, step.primary),
                    )));
                }
                writes.push(
                    Write::update(
                        counters_key(owner, counters_region(step.to, step.primary)),
                        "SET #open_sessions = if_not_exists(#open_sessions, :zero) + :one",
                    )
                    .bind(":zero", n(0))
                    .bind(":one", n(1)),
                );
            }
            match self.transact(writes).await? {
                Ok(()) => {
                    return Ok(Takeover::Moved {
                        epoch,
                        failed_simulators,
                    });
                }
                Err(c) if c.at(0) => {
                    match self.live_session(id).await?.filter(|s| step.starts_at(s)) {
                        Some(now) => stored = now,
                        None => break,
                    }
                }
                Err(_) => release_old = false,
            }
        }
        Ok(found(step, self.live_session(id).await?.as_ref()))
    }
}
