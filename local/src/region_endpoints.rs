//! Where to reach one region of a multi-region stack (`--regions N`): an entry of the endpoints
//! file's `regions` and of the web page's `/config.json`. A leaf module, so that `web` (which
//! `stack` starts) and `regions` (which starts stacks) both name it without a cycle.

use serde::Serialize;

/// Where to reach one region; an entry of the endpoints file's `regions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionEndpoints {
    /// The region (`local-a`).
    pub name: String,
    /// Its HTTP API's base URL.
    pub http_api: String,
    /// Its WebSocket API.
    pub ws_api: String,
    /// Its streamer's base URL.
    pub sse: String,
    /// Its web page.
    pub web: String,
    /// Where to mint dev tokens (each region has its own auth service, all of one identity
    /// provider: a token minted here is valid in every region).
    pub token_url: String,
}
