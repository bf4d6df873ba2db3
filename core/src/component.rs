//! The deployed parts of the service, each with its own IAM role in the SAM template.

use std::fmt;

/// A deployed part of the service. Its name travels in the user agent of every AWS call the
/// part makes (`app/session-<name>`), so CloudTrail tells the callers apart, and so does the
/// test suite's record of calls, which `scripts/permissions-check.sh` checks against each
/// part's IAM role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The REST control plane Lambda (`rest-api`).
    RestApi,
    /// The HTTP API's bearer-token authorizer Lambda (`authorizer`).
    Authorizer,
    /// The WebSocket `$connect` authorizer Lambda (`ws-authorizer`).
    WsAuthorizer,
    /// The WebSocket routes' Lambda (`ws-handler`).
    WsHandler,
    /// The long-lived streamer on EKS (`streamer`).
    Streamer,
    /// The migration runner, `session-admin`, on deploy (`MigrationsFunction`) or by hand
    /// (`admin`).
    Admin,
    /// `session-admin table restore`, the point-in-time restore drill an operator runs with
    /// the stack's recovery role (`recovery`).
    Recovery,
}

impl Component {
    /// Every component.
    pub const ALL: [Self; 7] = [
        Self::RestApi,
        Self::Authorizer,
        Self::WsAuthorizer,
        Self::WsHandler,
        Self::Streamer,
        Self::Admin,
        Self::Recovery,
    ];

    /// The component's name, as its binary is named (`admin`: `session-admin`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::RestApi => "rest-api",
            Self::Authorizer => "authorizer",
            Self::WsAuthorizer => "ws-authorizer",
            Self::WsHandler => "ws-handler",
            Self::Streamer => "streamer",
            Self::Admin => "admin",
            Self::Recovery => "recovery",
        }
    }

    /// The AWS SDK's app name for this component: `session-<name>`.
    pub fn app_name(self) -> aws_config::AppName {
        aws_config::AppName::new(format!("session-{}", self.name()))
            .unwrap_or_else(|_| unreachable!("component names are valid app names"))
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_has_a_valid_app_name_named_after_its_binary() {
        for component in Component::ALL {
            assert_eq!(
                component.app_name().to_string(),
                format!("session-{component}")
            );
        }
    }
}
