//! Conditional writes, described once and sent either alone or inside a transaction.
//!
//! Hand-written because the SDK has four builder types (put, update, delete)
//! and two call styles (single call, transaction item) with the same expression plumbing;
//! this keeps each store operation to its keys and expressions.
//!
//! Every put and update stamps its item with the write's own id ([`WRITE_ID`]) and asks for the
//! item as it was when a condition fails (`ReturnValuesOnConditionCheckFailure = ALL_OLD`). A
//! write whose earlier attempt landed but whose answer was lost (a timed-out attempt the SDK
//! retried) then fails its condition against itself: finding its own id on the item, it
//! counts as applied ([`Write::landed`]) instead of as a false conflict or replay.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::item::{Item, n};
use crate::store::StoreError;

/// What a write does.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// Replace or create the whole item.
    Put(Item),
    /// Apply an update expression to the item with this key.
    Update { key: Item, expression: String },
    /// Delete the item with this key.
    Delete(Item),
}

/// One write with its condition and the `:values` its expressions use.
///
/// Attribute names are always written `#name` in expressions; the names map is derived from
/// them, so reserved words (`status`, `owner`, `ttl`) never need thought.
#[derive(Debug, Clone)]
pub(super) struct Write {
    op: Op,
    condition: Option<String>,
    values: HashMap<String, AttributeValue>,
    /// Unique to this logical write and stamped on the item (puts and updates), so that a
    /// retried attempt failing its condition can tell its own landed write from another's.
    id: String,
    /// The schema version stamped on the item: [`SCHEMA_VERSION`] except in a migration's
    /// writes, which record the version they bring the item to.
    schema: u32,
}

/// The attribute that holds the id of the last write of an item (see the module docs).
pub(super) const WRITE_ID: &str = "write_id";

/// The attribute that holds the schema version an item was last written at (absent: version 1,
/// from before the attribute existed); migrations bring older items up to [`SCHEMA_VERSION`].
pub(super) const SCHEMA_VERSION_ATTR: &str = "schema_version";

/// The schema version every put and update writes. 2: connection items carry their `WSCONN#`
/// GSI1 entry (migration 2 adds it to older ones). 3: that entry is in one of 16 shards, not 8
/// (migration 3 moves older ones).
pub(super) const SCHEMA_VERSION: u32 = 3;

/// Why a single write did not apply.
#[derive(Debug)]
pub(super) enum WriteError {
    /// Its condition was false; nothing was written.
    ConditionFailed,
    /// Any other failure.
    Store(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Write {
    pub(super) fn put(item: Item) -> Self {
        Self::new(Op::Put(item))
    }

    pub(super) fn update(key: Item, expression: &str) -> Self {
        Self::new(Op::Update {
            key,
            expression: expression.to_owned(),
        })
    }

    pub(super) fn delete(key: Item) -> Self {
        Self::new(Op::Delete(key))
    }

    fn new(op: Op) -> Self {
        Self {
            op,
            condition: None,
            values: HashMap::new(),
            id: ulid::Ulid::new().to_string(),
            schema: SCHEMA_VERSION,
        }
    }

    /// Whether `item` (as returned by a failed condition) holds this very write: then an
    /// earlier attempt of it landed, and it applied. Deletes leave nothing to recognise.
    pub(super) fn landed(&self, item: Option<&Item>) -> bool {
        !matches!(self.op, Op::Delete(_))
            && item
                .and_then(|item| item.get(WRITE_ID))
                .is_some_and(|id| id.as_s().is_ok_and(|id| *id == self.id))
    }

    /// The write with its id stamped on the item: an attribute of a put's item, an assignment
    /// of an update's expression.
    fn stamped(mut self) -> Self {
        let id = AttributeValue::S(self.id.clone());
        match &mut self.op {
            Op::Put(item) => {
                item.insert(WRITE_ID.to_owned(), id);
                item.insert(SCHEMA_VERSION_ATTR.to_owned(), n(self.schema));
            }
            Op::Update { expression, .. } => {
                *expression = with_assignment(expression, &format!("#{WRITE_ID} = :{WRITE_ID}"));
                *expression = with_assignment(
                    expression,
                    &format!("#{SCHEMA_VERSION_ATTR} = :{SCHEMA_VERSION_ATTR}"),
                );
                self.values.insert(format!(":{WRITE_ID}"), id);
                self.values
                    .insert(format!(":{SCHEMA_VERSION_ATTR}"), n(self.schema));
            }
            Op::Delete(_) => {}
        }
        self
    }

    /// `ALL_OLD` for a conditional put or update (whose failure may be its own landed write).
    fn old_on_failure(&self) -> Option<ReturnValuesOnConditionCheckFailure> {
        (self.condition.is_some() && !matches!(self.op, Op::Delete(_)))
            .then_some(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// Stamps `version` rather than [`SCHEMA_VERSION`] (a migration's write).
    pub(super) fn at_schema(mut self, version: u32) -> Self {
        self.schema = version;
        self
    }

    /// Applies the write only if `condition` holds.
    pub(super) fn when(mut self, condition: &str) -> Self {
        self.condition = Some(condition.to_owned());
        self
    }

    /// Adds `condition` to the write's condition with `AND` (the existing one must have no
    /// top-level `OR`: DynamoDB refuses the parentheses that would make it safe when redundant).
    pub(super) fn and_when(mut self, condition: &str) -> Self {
        self.condition = Some(match self.condition.take() {
            Some(existing) => format!("{existing} AND {condition}"),
            None => condition.to_owned(),
        });
        self
    }

    /// Binds `:name` to `value`.
    pub(super) fn bind(mut self, name: &str, value: AttributeValue) -> Self {
        self.values.insert(name.to_owned(), value);
        self
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        let mut names = HashMap::new();
        let expressions = [
            self.condition.as_deref(),
            match &self.op {
                Op::Update { expression, .. } => Some(expression.as_str()),
                _ => None,
            },
        ];
        for expression in expressions.into_iter().flatten() {
            names.extend(expression_names(expression));
        }
        (!names.is_empty()).then_some(names)
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }

    /// This write as an item of `TransactWriteItems`, stamped with its id (keep the write to
    /// recognise it with [`Self::landed`]).
    pub(super) fn to_transact_item(&self, table: &str) -> Result<TransactWriteItem, StoreError> {
        let this = self.clone().stamped();
        let old_on_failure = this.old_on_failure();
        let names = this.names();
        let values = this.values();
        let item = match this.op {
            Op::Put(item) => TransactWriteItem::builder().put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(item))
                    .set_condition_expression(this.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .set_return_values_on_condition_check_failure(old_on_failure)
                    .build()
                    .map_err(backend)?,
            ),
            Op::Update { key, expression } => TransactWriteItem::builder().update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .update_expression(expression)
                    .set_condition_expression(this.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .set_return_values_on_condition_check_failure(old_on_failure)
                    .build()
                    .map_err(backend)?,
            ),
            Op::Delete(key) => TransactWriteItem::builder().delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .set_condition_expression(this.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(backend)?,
            ),
        };
        Ok(item.build())
    }

    /// Sends this write alone; an update returns the item as it is after the write. A write
    /// whose condition fails against its own earlier landed attempt has applied (`Ok`).
    pub(super) async fn send(
        self,
        client: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<Option<Item>, WriteError> {
        self.send_seeing_old(client, table, &mut None).await
    }

    /// [`Self::send`], keeping in `old` the item as it was when the condition failed
    /// (`ALL_OLD`), for writes that decide their next step from it (the rate limiter).
    pub(super) async fn send_seeing_old(
        self,
        client: &aws_sdk_dynamodb::Client,
        table: &str,
        old: &mut Option<Item>,
    ) -> Result<Option<Item>, WriteError> {
        let this = self.stamped();
        let old_on_failure = this.old_on_failure();
        let names = this.names();
        let values = this.values();
        let landed = |item: Option<&Item>| {
            old.clone_from(&item.cloned());
            this.landed(item)
        };
        match this.op.clone() {
            Op::Put(item) => client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(this.condition.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .set_return_values_on_condition_check_failure(old_on_failure)
                .send()
                .await
                .map(|_| None)
                .or_else(|e| classify_write(e, landed).map(|_| None)),
            Op::Update { key, expression } => client
                .update_item()
                .table_name(table)
                .set_key(Some(key))
                .update_expression(expression)
                .set_condition_expression(this.condition.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values(ReturnValue::AllNew)
                .set_return_values_on_condition_check_failure(old_on_failure)
                .send()
                .await
                .map(|out| out.attributes)
                .or_else(|e| classify_write(e, landed).map(Some)),
            Op::Delete(key) => client
                .delete_item()
                .table_name(table)
                .set_key(Some(key))
                .set_condition_expression(this.condition.clone())
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .send()
                .await
                .map(|_| None)
                .or_else(|e| classify_write(e, landed).map(|_| None)),
        }
    }
}

/// `expression` with `assignment` added to its `SET` clause (or a `SET` clause added).
fn with_assignment(expression: &str, assignment: &str) -> String {
    let words: Vec<&str> = expression.split(' ').collect();
    match words.iter().position(|w| *w == "SET") {
        Some(at) => {
            let (before, after) = words.split_at(at + 1);
            format!("{} {assignment}, {}", before.join(" "), after.join(" "))
        }
        // An empty expression (a write of the stamps alone) leaves no trailing space.
        None => format!("SET {assignment} {expression}")
            .trim_end()
            .to_owned(),
    }
}

/// The item a failed condition returned, for each single-item call's error type.
trait OldItem {
    fn old_item(&self) -> Option<&Item>;
}

impl OldItem for PutItemError {
    fn old_item(&self) -> Option<&Item> {
        match self {
            Self::ConditionalCheckFailedException(e) => e.item(),
            _ => None,
        }
    }
}

impl OldItem for UpdateItemError {
    fn old_item(&self) -> Option<&Item> {
        match self {
            Self::ConditionalCheckFailedException(e) => e.item(),
            _ => None,
        }
    }
}

impl OldItem for DeleteItemError {
    fn old_item(&self) -> Option<&Item> {
        match self {
            Self::ConditionalCheckFailedException(e) => e.item(),
            _ => None,
        }
    }
}

/// `#name` tokens of an expression, mapped to the attribute `name`.
pub(super) fn expression_names(expression: &str) -> impl Iterator<Item = (String, String)> + '_ {
    expression.split('#').skip(1).filter_map(|rest| {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (end > 0).then(|| (format!("#{}", &rest[..end]), rest[..end].to_owned()))
    })
}

pub(super) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Error codes that mean "try again later", not "you asked for something wrong".
const TRANSIENT_CODES: [&str; 6] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// Maps an SDK failure to a store error: transient failures are [`StoreError::Unavailable`].
pub(super) fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => service
            .err()
            .code()
            .is_some_and(|code| TRANSIENT_CODES.contains(&code)),
        _ => false,
    };
    let err = Box::new(err);
    if transient {
        StoreError::Unavailable(err)
    } else {
        StoreError::Backend(err)
    }
}

/// A failed single write: applied after all if its condition failed against its own landed
/// write (`landed` says, given the item returned), else why it did not apply.
fn classify_write<E, R>(
    err: SdkError<E, R>,
    landed: impl FnOnce(Option<&Item>) -> bool,
) -> Result<Item, WriteError>
where
    E: OldItem + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if err.code() == Some("ConditionalCheckFailedException") {
        let old = err.as_service_error().and_then(OldItem::old_item);
        if landed(old) {
            return Ok(old.cloned().unwrap_or_default());
        }
        Err(WriteError::ConditionFailed)
    } else {
        Err(WriteError::Store(classify(err)))
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ProvisionedThroughputExceededException,
        RequestLimitExceeded, ThrottlingException,
    };

    use super::*;

    fn metadata(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).build()
    }

    #[test]
    fn throttled_single_calls_are_unavailable_not_backend_failures() {
        let errors = [
            PutItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder()
                    .meta(metadata("ProvisionedThroughputExceededException"))
                    .build(),
            ),
            PutItemError::RequestLimitExceeded(
                RequestLimitExceeded::builder()
                    .meta(metadata("RequestLimitExceeded"))
                    .build(),
            ),
            PutItemError::ThrottlingException(
                ThrottlingException::builder()
                    .meta(metadata("ThrottlingException"))
                    .build(),
            ),
        ];
        for error in errors {
            let classified = classify(SdkError::service_error(error, ()));
            assert!(classified.is_transient(), "{classified:?}");
        }
        let refused = classify(SdkError::service_error(
            PutItemError::generic(metadata("ValidationException")),
            (),
        ));
        assert!(!refused.is_transient(), "{refused:?}");
    }

    #[test]
    fn a_failed_condition_against_the_writes_own_item_counts_as_applied() {
        let write = Write::put(Item::new()).when("attribute_not_exists(#PK)");
        let failed = |id: &str| {
            let old = Item::from([(WRITE_ID.to_owned(), AttributeValue::S(id.to_owned()))]);
            SdkError::service_error(
                PutItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .set_item(Some(old))
                        .meta(metadata("ConditionalCheckFailedException"))
                        .build(),
                ),
                (),
            )
        };

        let own = classify_write(failed(&write.id), |old| write.landed(old));
        let other = classify_write(failed("01OTHERWRITE"), |old| write.landed(old));

        assert!(own.is_ok(), "{own:?}");
        assert!(
            matches!(other, Err(WriteError::ConditionFailed)),
            "{other:?}"
        );
    }

    #[test]
    fn the_write_id_joins_an_updates_set_clause_or_adds_one() {
        assert_eq!(
            with_assignment("SET #a = :a, #b = :b", "#w = :w"),
            "SET #w = :w, #a = :a, #b = :b"
        );
        assert_eq!(
            with_assignment("REMOVE #a, #b", "#w = :w"),
            "SET #w = :w REMOVE #a, #b"
        );
        assert_eq!(
            with_assignment("SET #a = :a REMOVE #b", "#w = :w"),
            "SET #w = :w, #a = :a REMOVE #b"
        );
        let stamped = Write::update(Item::new(), "REMOVE #a").stamped();
        assert!(stamped.names().unwrap().contains_key("#write_id"));
        assert!(stamped.values().unwrap().contains_key(":write_id"));
        assert!(
            stamped.values().unwrap()[":schema_version"] == n(SCHEMA_VERSION),
            "every update records the schema version"
        );
    }

    #[test]
    fn names_are_derived_from_hash_tokens() {
        let names: HashMap<_, _> =
            expression_names("#status = :active AND (#n < :max OR attribute_not_exists(#n))")
                .collect();
        assert_eq!(names.len(), 2);
        assert_eq!(names["#status"], "status");
        assert_eq!(names["#n"], "n");
    }
}
