//! The DynamoDB actions of every port's methods, gathered from the port files, and the test
//! that holds each file's declaration to the calls its source makes.

use crate::store::ports::{MethodActions, Port};

/// The DynamoDB actions of each of `port`'s methods.
pub(in crate::store) fn iam_actions(port: Port) -> &'static [MethodActions] {
    match port {
        Port::Sessions => super::sessions::IAM_ACTIONS,
        Port::Simulators => super::simulators::IAM_ACTIONS,
        Port::Connections => super::connections::IAM_ACTIONS,
        Port::Tickets => super::tickets::IAM_ACTIONS,
        Port::Idempotency => super::idempotency::IAM_ACTIONS,
        Port::Leases => super::leases::IAM_ACTIONS,
        Port::Revocations => super::revocation::IAM_ACTIONS,
        Port::RateLimits => super::rate_limit::IAM_ACTIONS,
        Port::RegionBeats => super::region_beat::IAM_ACTIONS,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::ports::{DELETE_ITEM, GET_ITEM, PUT_ITEM, QUERY, SCAN, UPDATE_ITEM};

    /// Call sites in this adapter's source (whitespace removed) and the action each makes.
    /// `transact` sends `TransactWriteItems`, which IAM authorises per item as the `Write::*`
    /// it carries; `.batch_` has no entry, so a file using them fails below.
    const CALLS: &[(&str, Option<&str>)] = &[
        (".get_item()", Some(GET_ITEM)),
        ("self.get(", Some(GET_ITEM)),
        (".session_usable(", Some(GET_ITEM)),
        (".usable_session(", Some(GET_ITEM)),
        (".missing_or_conflict(", Some(GET_ITEM)),
        (".query()", Some(QUERY)),
        (".query_prefix(", Some(QUERY)),
        ("Write::put(", Some(PUT_ITEM)),
        ("Write::update(", Some(UPDATE_ITEM)),
        ("Write::delete(", Some(DELETE_ITEM)),
        (".batch_", None),
        (".scan()", Some(SCAN)),
    ];

    /// The DynamoDB actions `source` calls, outside its unit tests.
    fn called(source: &str) -> BTreeSet<&'static str> {
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        CALLS
            .iter()
            .filter(|(call, _)| code.contains(call))
            .map(|(call, action)| {
                action.unwrap_or_else(|| panic!("no IAM action known for {call}"))
            })
            .collect()
    }

    /// Each port, its file, and the helper files its methods call into.
    fn port_sources(port: Port) -> Vec<&'static str> {
        match port {
            Port::Sessions => vec![include_str!("sessions.rs")],
            Port::Simulators => vec![
                include_str!("simulators.rs"),
                include_str!("event_budget.rs"),
            ],
            Port::Connections => vec![include_str!("connections.rs")],
            Port::Tickets => vec![include_str!("tickets.rs")],
            Port::Idempotency => vec![include_str!("idempotency.rs")],
            Port::Leases => vec![include_str!("leases.rs")],
            Port::Revocations => vec![include_str!("revocation.rs")],
            Port::RateLimits => vec![include_str!("rate_limit.rs")],
            Port::RegionBeats => vec![include_str!("region_beat.rs")],
        }
    }

    #[test]
    fn each_port_declares_exactly_the_dynamodb_actions_its_files_call() {
        for port in Port::ALL {
            let declared: BTreeSet<&str> = iam_actions(port)
                .iter()
                .flat_map(|(_, actions)| actions.iter().copied())
                .collect();
            let called: BTreeSet<&str> = port_sources(port).into_iter().flat_map(called).collect();

            assert_eq!(
                declared,
                called,
                "{}: IAM_ACTIONS against its calls",
                port.name()
            );
        }
    }

    #[test]
    fn each_port_declares_every_method_its_file_implements_and_no_other() {
        for port in Port::ALL {
            let source = port_sources(port)[0];
            let head = format!("impl {} for DynamoStore {{\n", port.name());
            let (_, rest) = source
                .split_once(&head)
                .unwrap_or_else(|| panic!("{} has no DynamoDB impl", port.name()));
            let implementation = rest.split("\n}\n").next().unwrap_or_default();
            let implemented: BTreeSet<&str> = implementation
                .split("async fn ")
                .skip(1)
                .filter_map(|rest| rest.split(['(', '<']).next())
                .collect();
            let declared: BTreeSet<&str> = iam_actions(port).iter().map(|(m, _)| *m).collect();

            assert_eq!(
                declared,
                implemented,
                "{}: IAM_ACTIONS methods",
                port.name()
            );
        }
    }
}
