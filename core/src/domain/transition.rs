//! The error of an illegal state transition.

/// A state machine was asked for a transition it does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {entity} cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The kind of entity (`session`, `simulator`).
    pub entity: &'static str,
    /// The state it is in.
    pub from: &'static str,
    /// The state it was asked to enter.
    pub to: &'static str,
}
