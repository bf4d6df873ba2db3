//! Conditional writes, described once and sent either alone or inside a transaction.
//!
//! Hand-written because the SDK has four builder types (put, update, delete)
//! and two call styles (single call, transaction item) with the same expression plumbing;
//! this keeps each store operation to its keys and expressions.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};

use super::item::Item;
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
}

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
        }
    }

    /// Applies the write only if `condition` holds.
    pub(super) fn when(mut self, condition: &str) -> Self {
        self.condition = Some(condition.to_owned());
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

    /// This write as an item of `TransactWriteItems`.
    pub(super) fn into_transact_item(self, table: &str) -> Result<TransactWriteItem, StoreError> {
        let names = self.names();
        let values = self.values();
        let item = match self.op {
            Op::Put(item) => TransactWriteItem::builder().put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(item))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(backend)?,
            ),
            Op::Update { key, expression } => TransactWriteItem::builder().update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .update_expression(expression)
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(backend)?,
            ),
            Op::Delete(key) => TransactWriteItem::builder().delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(backend)?,
            ),
        };
        Ok(item.build())
    }

    /// Sends this write alone; an update returns the item as it is after the write.
    pub(super) async fn send(
        self,
        client: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<Option<Item>, WriteError> {
        let names = self.names();
        let values = self.values();
        match self.op {
            Op::Put(item) => client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(self.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .send()
                .await
                .map(|_| None)
                .map_err(classify_write),
            Op::Update { key, expression } => client
                .update_item()
                .table_name(table)
                .set_key(Some(key))
                .update_expression(expression)
                .set_condition_expression(self.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values(ReturnValue::AllNew)
                .send()
                .await
                .map(|out| out.attributes)
                .map_err(classify_write),
            Op::Delete(key) => client
                .delete_item()
                .table_name(table)
                .set_key(Some(key))
                .set_condition_expression(self.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .send()
                .await
                .map(|_| None)
                .map_err(classify_write),
        }
    }
}

/// `#name` tokens of an expression, mapped to the attribute `name`.
fn expression_names(expression: &str) -> impl Iterator<Item = (String, String)> + '_ {
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

fn classify_write<E, R>(err: SdkError<E, R>) -> WriteError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if err.code() == Some("ConditionalCheckFailedException") {
        WriteError::ConditionFailed
    } else {
        WriteError::Store(classify(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
