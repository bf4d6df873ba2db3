//! What is limited: the classes of requests, each with its quota from the settings, and the
//! subject a limit is kept for (a user, a source address, a connection).

use std::fmt;
use std::net::IpAddr;

use super::gcra::Rate;
use crate::config::{RateLimitSettings, RateQuota};
use crate::domain::UserId;

/// A class of requests with a quota of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// REST reads, per user.
    Reads,
    /// REST writes, per user.
    Writes,
    /// Ticket issuing, per user.
    Tickets,
    /// Simulator start and stop, per user.
    SimulatorControl,
    /// Every REST request, per source address.
    Address,
    /// WebSocket `$connect`, per user.
    WsConnect,
    /// WebSocket messages, per connection.
    WsMessages,
    /// SSE opens, per user.
    SseConnect,
    /// WebSocket `$connect` and SSE opens, per source address.
    ConnectAddress,
}

impl LimitClass {
    /// Every class.
    pub const ALL: [Self; 9] = [
        Self::Reads,
        Self::Writes,
        Self::Tickets,
        Self::SimulatorControl,
        Self::Address,
        Self::WsConnect,
        Self::WsMessages,
        Self::SseConnect,
        Self::ConnectAddress,
    ];

    /// The stable name: the policy's name in the headers, part of the store key, a metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Reads => "reads",
            Self::Writes => "writes",
            Self::Tickets => "tickets",
            Self::SimulatorControl => "simulator-control",
            Self::Address => "address",
            Self::WsConnect => "ws-connect",
            Self::WsMessages => "ws-messages",
            Self::SseConnect => "sse-connect",
            Self::ConnectAddress => "connect-address",
        }
    }

    /// The class's rate in `settings`.
    pub fn rate(self, settings: &RateLimitSettings) -> Rate {
        let RateQuota { per_second, burst } = match self {
            Self::Reads => settings.reads,
            Self::Writes => settings.writes,
            Self::Tickets => settings.tickets,
            Self::SimulatorControl => settings.simulator_control,
            Self::Address => settings.per_address,
            Self::WsConnect => settings.ws_connect,
            Self::WsMessages => settings.ws_messages,
            Self::SseConnect => settings.sse_connect,
            Self::ConnectAddress => settings.connect_per_address,
        };
        Rate::new(per_second, burst)
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// Whom a limit is kept for.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// An authenticated user.
    User(&'a UserId),
    /// A source address.
    Address(IpAddr),
    /// A WebSocket connection (API Gateway's id).
    Connection(&'a str),
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(user) => write!(f, "u:{user}"),
            Self::Address(address) => write!(f, "a:{}", address_key(*address)),
            Self::Connection(id) => write!(f, "c:{id}"),
        }
    }
}

/// The address a per-address limit or cap counts: an IPv6 client's /64 (one host holds a whole
/// /64, and a limit per /128 would not limit it), an IPv4-mapped one as IPv4.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The client's address: the TCP `peer`, or, behind `trusted_hops` proxies that each append
/// the address they saw to `X-Forwarded-For`, the entry the farthest trusted proxy appended
/// (`trusted_hops` from the right). Entries further left are whatever the client wrote and are
/// never taken; a header too short or unparsable falls back to the peer.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted_hops: u8) -> IpAddr {
    if trusted_hops == 0 {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let entries: Vec<&str> = header.split(',').map(str::trim).collect();
    entries
        .len()
        .checked_sub(usize::from(trusted_hops))
        .and_then(|at| entries[at].parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));

    #[test]
    fn the_client_address_is_the_peer_unless_proxies_are_trusted() {
        let forged = Some("6.6.6.6");

        assert_eq!(client_address(PEER, forged, 0), PEER);
        assert_eq!(client_address(PEER, None, 1), PEER);
    }

    #[test]
    fn behind_trusted_proxies_the_entry_the_farthest_one_appended_is_the_client() {
        let header = Some("6.6.6.6, 203.0.113.7, 10.0.0.5");

        assert_eq!(
            client_address(PEER, header, 1),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_address(PEER, header, 2),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(PEER, header, 4), PEER, "too short");
        assert_eq!(client_address(PEER, Some("junk"), 1), PEER);
    }

    #[test]
    fn rate_limits_are_settings_validated_with_the_setting_named() {
        use figment::providers::{Format as _, Toml};
        let load = |toml: &str| {
            crate::config::Settings::from_figment(
                &figment::Figment::new().merge(Toml::string(toml)),
            )
        };

        let tuned = load("[rate_limits.reads]\nper_second = 3\nburst = 7").unwrap();
        let zero = load("[rate_limits.writes]\nper_second = 0\nburst = 7").unwrap_err();
        let partial = load("[rate_limits.tickets]\nper_second = 3").unwrap_err();

        assert_eq!(LimitClass::Reads.rate(&tuned.rate_limits), Rate::new(3, 7));
        assert_eq!(
            LimitClass::Writes.rate(&tuned.rate_limits),
            Rate::new(5, 10),
            "the others keep their defaults"
        );
        assert!(zero.to_string().contains("rate_limits.writes"), "{zero}");
        assert!(partial.to_string().contains("burst"), "{partial}");
    }

    #[test]
    fn subjects_are_spelled_apart_in_keys() {
        let user = UserId::parse("user", "alice").unwrap();

        assert_eq!(Subject::User(&user).to_string(), "u:alice");
        assert_eq!(Subject::Address(PEER).to_string(), "a:10.0.0.9");
        let in_one_64 = |a: &str| Subject::Address(a.parse().unwrap()).to_string();
        assert_eq!(in_one_64("2001:db8::1"), in_one_64("2001:db8::ffff:2"));
        assert_ne!(in_one_64("2001:db8::1"), in_one_64("2001:db8:0:1::1"));
        assert_eq!(in_one_64("::ffff:10.0.0.9"), "a:10.0.0.9");
        assert_eq!(Subject::Connection("abc=").to_string(), "c:abc=");
    }
}
