//! `rate_limits`: the rate limit of each class of request, per user and per source address.

use serde::Deserialize;

use super::{ConfigError, invalid};

/// One class's rate limit (GCRA, see `crate::ratelimit`): a sustained rate and the burst a full
/// allowance admits at once.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RateQuota {
    /// Sustained requests per second.
    #[schemars(range(min = 1, max = 100_000))]
    pub per_second: u32,
    /// Requests admitted at once from a full allowance.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub burst: u32,
}

impl RateQuota {
    const fn of(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

/// Rate limits per user and per source address at every door (`rate_limits`). The defaults are
/// far above what a frontend does and reached by a flood within a second or two (reasoning in
/// docs/architecture.md, "Rate limits").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// REST reads (`GET`), per user.
    pub reads: RateQuota,
    /// REST writes (create or close a session), per user.
    pub writes: RateQuota,
    /// Ticket issuing (`POST …/tickets`, `POST …/reconnect`), per user.
    pub tickets: RateQuota,
    /// Simulator start and stop, per user.
    pub simulator_control: RateQuota,
    /// Every REST route (the anonymous ones too), per source address.
    pub per_address: RateQuota,
    /// WebSocket `$connect`, per user.
    pub ws_connect: RateQuota,
    /// WebSocket messages (heartbeats and any other), per connection.
    pub ws_messages: RateQuota,
    /// SSE stream opens, per user.
    pub sse_connect: RateQuota,
    /// WebSocket `$connect` and SSE opens, per source address.
    pub connect_per_address: RateQuota,
    /// Proxies in front of the streamer that append the client's address to `X-Forwarded-For`
    /// (the load balancer: 1); 0 takes the TCP peer as the client. Never more than really
    /// exist: a client can write anything into the header's earlier entries.
    pub trusted_proxy_hops: u8,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            reads: RateQuota::of(20, 40),
            writes: RateQuota::of(5, 10),
            tickets: RateQuota::of(2, 10),
            simulator_control: RateQuota::of(1, 5),
            per_address: RateQuota::of(50, 100),
            ws_connect: RateQuota::of(2, 10),
            ws_messages: RateQuota::of(5, 20),
            sse_connect: RateQuota::of(2, 10),
            connect_per_address: RateQuota::of(10, 40),
            trusted_proxy_hops: 0,
        }
    }
}

impl RateLimitSettings {
    /// Every class's quota with its setting's name.
    pub fn quotas(&self) -> [(&'static str, RateQuota); 9] {
        [
            ("rate_limits.reads", self.reads),
            ("rate_limits.writes", self.writes),
            ("rate_limits.tickets", self.tickets),
            ("rate_limits.simulator_control", self.simulator_control),
            ("rate_limits.per_address", self.per_address),
            ("rate_limits.ws_connect", self.ws_connect),
            ("rate_limits.ws_messages", self.ws_messages),
            ("rate_limits.sse_connect", self.sse_connect),
            ("rate_limits.connect_per_address", self.connect_per_address),
        ]
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (setting, quota) in self.quotas() {
            if !(1..=100_000).contains(&quota.per_second) {
                return invalid(setting, "per_second must be between 1 and 100000");
            }
            if !(1..=1_000_000).contains(&quota.burst) {
                return invalid(setting, "burst must be between 1 and 1000000");
            }
        }
        if self.trusted_proxy_hops > 8 {
            return invalid("rate_limits.trusted_proxy_hops", "must be at most 8");
        }
        Ok(())
    }
}
