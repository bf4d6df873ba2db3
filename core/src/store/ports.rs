//! Which port methods an entry point calls, and the DynamoDB actions the adapter makes for each:
//! the table actions an entry point's IAM role needs. Each DynamoDB port file declares its
//! methods' actions (checked against its calls by a unit test in `dynamodb/iam.rs`); each entry
//! point lists the methods it calls; `tests/tests/infra.rs` holds every role of
//! `infra/template.yaml` to exactly the union.

use std::collections::BTreeMap;

/// `dynamodb:GetItem`.
pub const GET_ITEM: &str = "dynamodb:GetItem";
/// `dynamodb:Query`.
pub const QUERY: &str = "dynamodb:Query";
/// `dynamodb:PutItem` (also what a `Put` inside `TransactWriteItems` is authorised as).
pub const PUT_ITEM: &str = "dynamodb:PutItem";
/// `dynamodb:UpdateItem` (also for an `Update` inside `TransactWriteItems`).
pub const UPDATE_ITEM: &str = "dynamodb:UpdateItem";
/// `dynamodb:DeleteItem` (also for a `Delete` inside `TransactWriteItems`).
pub const DELETE_ITEM: &str = "dynamodb:DeleteItem";
/// `dynamodb:Scan` (only a failover's listing of sessions by home region).
pub const SCAN: &str = "dynamodb:Scan";

/// A store port: one trait of [`crate::store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    /// [`super::SessionStore`].
    Sessions,
    /// [`super::SimulatorStore`].
    Simulators,
    /// [`super::ConnectionStore`].
    Connections,
    /// [`super::TicketStore`].
    Tickets,
    /// [`super::IdempotencyStore`].
    Idempotency,
    /// [`super::LeaseStore`].
    Leases,
    /// [`super::RevocationStore`].
    Revocations,
    /// [`super::RateLimitStore`].
    RateLimits,
    /// [`super::RegionBeatStore`].
    RegionBeats,
}

/// One port method and the DynamoDB actions the adapter's implementation of it makes.
pub type MethodActions = (&'static str, &'static [&'static str]);

impl Port {
    /// Every port.
    pub const ALL: [Self; 9] = [
        Self::Sessions,
        Self::Simulators,
        Self::Connections,
        Self::Tickets,
        Self::Idempotency,
        Self::Leases,
        Self::Revocations,
        Self::RateLimits,
        Self::RegionBeats,
    ];

    /// The trait's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sessions => "SessionStore",
            Self::Simulators => "SimulatorStore",
            Self::Connections => "ConnectionStore",
            Self::Tickets => "TicketStore",
            Self::Idempotency => "IdempotencyStore",
            Self::Leases => "LeaseStore",
            Self::Revocations => "RevocationStore",
            Self::RateLimits => "RateLimitStore",
            Self::RegionBeats => "RegionBeatStore",
        }
    }

    /// The DynamoDB actions of each of the port's methods, as the DynamoDB adapter makes them.
    pub fn dynamodb_actions(self) -> &'static [MethodActions] {
        super::dynamodb::iam_actions(self)
    }
}

/// The methods of one port an entry point calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortUse {
    /// The port.
    pub port: Port,
    /// Its methods called, by name.
    pub methods: &'static [&'static str],
}

/// A method an entry point lists that its port does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{port} has no method {method}")]
pub struct UnknownMethod {
    /// The port's trait.
    pub port: &'static str,
    /// The method listed.
    pub method: &'static str,
}

/// DynamoDB actions, each with the `(port, method)`s that need it.
pub type ActionUsers = BTreeMap<&'static str, Vec<(&'static str, &'static str)>>;

/// Every DynamoDB action `uses` need, each with the `(port, method)`s that need it.
///
/// # Errors
/// A use names a method its port does not declare.
pub fn dynamodb_actions(uses: &[&[PortUse]]) -> Result<ActionUsers, UnknownMethod> {
    let mut actions = ActionUsers::new();
    for port_use in uses.iter().flat_map(|u| u.iter()) {
        let table = port_use.port.dynamodb_actions();
        for &method in port_use.methods {
            let (_, needed) =
                table
                    .iter()
                    .find(|(name, _)| *name == method)
                    .ok_or(UnknownMethod {
                        port: port_use.port.name(),
                        method,
                    })?;
            for &action in *needed {
                actions
                    .entry(action)
                    .or_default()
                    .push((port_use.port.name(), method));
            }
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actions_of_uses_are_the_union_of_their_methods_actions_naming_who_needs_each() {
        let uses: &[PortUse] = &[
            PortUse {
                port: Port::Sessions,
                methods: &["get_session"],
            },
            PortUse {
                port: Port::Tickets,
                methods: &["consume_ticket"],
            },
        ];

        let actions = dynamodb_actions(&[uses]).unwrap();

        assert_eq!(
            actions.keys().copied().collect::<Vec<_>>(),
            [GET_ITEM, PUT_ITEM]
        );
        assert_eq!(actions[GET_ITEM], [("SessionStore", "get_session")]);
    }

    #[test]
    fn a_method_the_port_does_not_have_is_named_in_the_error() {
        let uses: &[PortUse] = &[PortUse {
            port: Port::Leases,
            methods: &["steal_lease"],
        }];

        let error = dynamodb_actions(&[uses]).unwrap_err();

        assert_eq!(error.to_string(), "LeaseStore has no method steal_lease");
    }
}
