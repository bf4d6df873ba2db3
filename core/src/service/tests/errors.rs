//! Errors keep their cause for the log.

use std::error::Error as _;

use crate::service::{ServiceError, error_chain};
use crate::store::StoreError;

#[test]
fn an_internal_error_keeps_its_cause_and_the_chain_names_every_layer() {
    let cause = StoreError::Conflict {
        entity: "connection",
        id: "conn-1".to_owned(),
    };
    let expected_cause = cause.to_string();

    let error = ServiceError::internal("heartbeat lost three write races", cause);

    let source = error.source().expect("the cause is kept");
    assert_eq!(source.to_string(), expected_cause);
    assert_eq!(
        error_chain(&error),
        format!("internal error: heartbeat lost three write races: {expected_cause}")
    );
    assert!(ServiceError::bug("an invariant broke").source().is_none());
}
