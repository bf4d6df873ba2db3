//! The DynamoDB adapter of [`TicketStore`]: one item per consumed ticket (`TICKET#<id>` /
//! `TICKET`), carrying its release while its stream may be resumed.

use crate::store::ports::{MethodActions, PUT_ITEM, UPDATE_ITEM};
use async_trait::async_trait;

use super::item::{Item, key, ms, n};
use super::write::Write;
use super::{DynamoStore, LIVE, TableSpec, applied};
use crate::domain::{EventId, TicketId, Timestamp};
use crate::store::{StoreError, TicketStore};

fn ticket_key(id: &TicketId) -> Item {
    key(format!("TICKET#{id}"), "TICKET")
}

/// Sets a ticket's release: where its stream may be reopened from (`resume_epoch`,
/// `resume_sequence`) and until when (`resumable_until`). Resuming removes the three.
const SET_RELEASE: &str =
    "SET #resume_epoch = :epoch, #resume_sequence = :sequence, #resumable_until = :until";

/// The DynamoDB actions of each method of [`TicketStore`] here (checked against the calls in this
/// file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] = &[
    ("consume_ticket", &[PUT_ITEM]),
    ("release_ticket", &[UPDATE_ITEM]),
    ("resume_ticket", &[UPDATE_ITEM]),
];

#[async_trait]
impl TicketStore for DynamoStore {
    async fn consume_ticket(&self, id: &TicketId, expires_at: Timestamp) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut record = ticket_key(id);
        record.extend([
            ("expires_at".to_owned(), ms(expires_at)),
            (TableSpec::TTL.to_owned(), n(expires_at.unix_seconds_ceil())),
        ]);
        let consume = Write::put(record)
            .when("attribute_not_exists(#PK) OR #expires_at <= :now")
            .bind(":now", ms(now));
        if applied(self.write(consume).await)? {
            Ok(())
        } else {
            Err(StoreError::TicketAlreadyUsed)
        }
    }

    async fn release_ticket(
        &self,
        id: &TicketId,
        last_delivered: EventId,
        resumable_until: Timestamp,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let release = |expression: &str, condition: &str| {
            Write::update(ticket_key(id), expression)
                .when(&format!("{LIVE} AND {condition}"))
                .bind(":now", ms(now))
                .bind(":epoch", n(last_delivered.epoch))
                .bind(":sequence", n(last_delivered.sequence))
                .bind(":until", ms(resumable_until))
        };
        // An update expression has no max(): the record's expiry becomes
        // max(expires_at, resumable_until) through two disjoint conditional writes, of which at
        // most one applies; `expires_at` never shrinks, so a live record meets one of them.
        let extend = release(
            &format!("{SET_RELEASE}, #expires_at = :until, #ttl = :ttl"),
            "#expires_at < :until",
        )
        .bind(":ttl", n(resumable_until.unix_seconds_ceil()));
        if applied(self.write(extend).await)? {
            return Ok(());
        }
        let keep = release(SET_RELEASE, "#expires_at >= :until");
        if applied(self.write(keep).await)? {
            return Ok(());
        }
        Err(StoreError::NotFound {
            entity: "ticket",
            id: id.to_string(),
        })
    }

    async fn resume_ticket(&self, id: &TicketId, from: EventId) -> Result<(), StoreError> {
        let now = self.clock.now();
        let resume = Write::update(
            ticket_key(id),
            "REMOVE #resume_epoch, #resume_sequence, #resumable_until",
        )
        .when(
            "#expires_at > :now AND #resumable_until > :now \
             AND #resume_epoch = :epoch AND #resume_sequence >= :sequence",
        )
        .bind(":now", ms(now))
        .bind(":epoch", n(from.epoch))
        .bind(":sequence", n(from.sequence));
        if applied(self.write(resume).await)? {
            Ok(())
        } else {
            Err(StoreError::TicketAlreadyUsed)
        }
    }
}
