//! Transactions: `TransactWriteItems` with its idempotency token, retried on conflicts, and
//! how a cancelled one ended.

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use backon::Retryable as _;

use super::DynamoStore;
use super::write::{Write, classify};
use crate::resilience::RetryPolicy;
use crate::store::StoreError;

/// Retries of a conflicting transaction: quick, as conflicts clear within milliseconds, and with
/// full jitter, as every retry in the service (contending writers spread out best).
const CONFLICT_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 8,
    base: Duration::from_millis(5),
    cap: Duration::from_millis(200),
};

/// How a transaction ended when it did not apply.
#[derive(Debug)]
pub(super) struct Cancelled {
    /// Per item, whether its condition failed.
    pub(super) failed: Vec<bool>,
}

impl DynamoStore {
    /// Runs a transaction; `Err(Cancelled)` says which conditions failed. Conflicts with
    /// concurrent transactions are retried with jittered backoff, as AWS advises.
    ///
    /// Retries and the `ClientRequestToken` (DynamoDB applies the calls of one token at most once
    /// within 10 minutes and answers later ones with the first one's success):
    /// - the SDK's own retries (a timed-out attempt, a 5xx, throttling) resend the same request,
    ///   token included: the attempt's outcome is unknown, and it may have landed;
    /// - this function's retries (a `TransactionConflict` cancellation, or
    ///   `TransactionInProgressException`, which DynamoDB answers while an earlier call with the
    ///   same token is still running) are the same logical transaction, whose earlier attempts
    ///   may be ambiguous (one timed out in the SDK and may still be landing): they keep the
    ///   token, so that at most one of them applies;
    /// - every call of this function is a new logical transaction with a new token: a caller
    ///   that tries again (after a purge freed a slot, after reading a newer version) does so
    ///   after a definite outcome — the conditions failed — and on state that has changed.
    ///
    /// A token is honoured only by DynamoDB (moto ignores it), and only for 10 minutes; the
    /// items also carry their write's id, so a retry whose conditions fail against this very
    /// transaction's landed items counts as applied (see `write`).
    pub(super) async fn transact(
        &self,
        writes: Vec<Write>,
    ) -> Result<Result<(), Cancelled>, StoreError> {
        let items = writes
            .iter()
            .map(|w| w.to_transact_item(&self.table))
            .collect::<Result<Vec<_>, _>>()?;
        let token = ulid::Ulid::new().to_string();
        let attempt = || async {
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(&token)
                .send()
                .await;
            match sent {
                Ok(_) => Ok(Ok(())),
                Err(err) => cancellation(err, &writes),
            }
        };
        attempt
            .retry(CONFLICT_RETRY.backoff())
            .when(|e| matches!(e, TxError::Conflict | TxError::InProgress))
            .await
            .map_err(|e| match e {
                TxError::Conflict | TxError::InProgress => {
                    StoreError::Unavailable(Box::new(TransactionConflict))
                }
                TxError::Store(e) => e,
            })
    }
}

#[derive(Debug)]
enum TxError {
    /// Cancelled by a concurrent transaction on one of the items: nothing applied.
    Conflict,
    /// An earlier call with the same token is still running: its outcome is unknown.
    InProgress,
    Store(StoreError),
}

#[derive(Debug, thiserror::Error)]
#[error("transaction kept conflicting with concurrent transactions")]
struct TransactionConflict;

/// Cancellation reasons that mean "try again later" (the item's partition was throttled).
const THROTTLED_REASONS: [&str; 5] = [
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
];

/// How a failed `TransactWriteItems` call of `writes` ended: applied after all (its conditions
/// failed against its own landed items), cancelled by conditions, to be retried, or failed.
fn cancellation<R>(
    err: SdkError<TransactWriteItemsError, R>,
    writes: &[Write],
) -> Result<Result<(), Cancelled>, TxError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = &err {
        match service.err() {
            TransactWriteItemsError::TransactionCanceledException(e) => {
                let reasons = e.cancellation_reasons();
                let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
                let failed: Vec<bool> = codes
                    .iter()
                    .map(|c| *c == "ConditionalCheckFailed")
                    .collect();
                // Atomic: one item holding this transaction's write means all of them landed.
                let landed = reasons
                    .iter()
                    .zip(writes)
                    .zip(&failed)
                    .any(|((reason, write), failed)| *failed && write.landed(reason.item()));
                if landed {
                    return Ok(Ok(()));
                }
                if failed.iter().any(|f| *f) {
                    return Ok(Err(Cancelled { failed }));
                }
                if codes.contains(&"TransactionConflict") {
                    return Err(TxError::Conflict);
                }
                if codes.iter().any(|c| THROTTLED_REASONS.contains(c)) {
                    return Err(TxError::Store(StoreError::Unavailable(Box::new(err))));
                }
            }
            TransactWriteItemsError::TransactionInProgressException(_) => {
                return Err(TxError::InProgress);
            }
            _ => {}
        }
    }
    Err(TxError::Store(classify(err)))
}

impl Cancelled {
    /// Whether the condition of the transaction's `index`th write failed.
    pub(super) fn at(&self, index: usize) -> bool {
        self.failed.get(index).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;

    use super::*;
    use crate::store::dynamodb::item::key;

    fn cancelled(codes: &[&str]) -> SdkError<TransactWriteItemsError, ()> {
        let mut e = TransactionCanceledException::builder().meta(
            ErrorMetadata::builder()
                .code("TransactionCanceledException")
                .build(),
        );
        for code in codes {
            e = e.cancellation_reasons(CancellationReason::builder().code(*code).build());
        }
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(e.build()),
            (),
        )
    }

    fn writes() -> Vec<Write> {
        vec![
            Write::put(key("A", "A")).when("attribute_not_exists(#PK)"),
            Write::put(key("B", "B")).when("attribute_not_exists(#PK)"),
        ]
    }

    #[test]
    fn a_transaction_cancelled_by_throttling_is_unavailable() {
        for reason in ["ThrottlingError", "ProvisionedThroughputExceeded"] {
            let outcome = cancellation(cancelled(&["None", reason]), &writes());
            assert!(
                matches!(&outcome, Err(TxError::Store(e)) if e.is_transient()),
                "{reason}: {outcome:?}"
            );
        }
    }

    #[test]
    fn conflicts_and_calls_in_progress_are_retried_and_conditions_are_not() {
        let conflict = cancellation(cancelled(&["TransactionConflict", "None"]), &writes());
        let condition = cancellation(cancelled(&["ConditionalCheckFailed", "None"]), &writes());
        let in_progress = cancellation(
            SdkError::service_error(
                TransactWriteItemsError::TransactionInProgressException(
                    aws_sdk_dynamodb::types::error::TransactionInProgressException::builder()
                        .build(),
                ),
                (),
            ),
            &writes(),
        );

        assert!(matches!(conflict, Err(TxError::Conflict)), "{conflict:?}");
        assert!(
            matches!(in_progress, Err(TxError::InProgress)),
            "{in_progress:?}"
        );
        assert!(
            matches!(&condition, Ok(Err(c)) if c.at(0) && !c.at(1)),
            "{condition:?}"
        );
    }
}
