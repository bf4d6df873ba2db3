//! Helpers shared by the end-to-end and contract suites: servers the tests start themselves, the
//! local stack with its HTTP client (`test_api`), a stack streaming one simulator's books
//! (`stream_fixture`) and their replica (`book_replica`), and the SSE and WebSocket clients, which check
//! live traffic against docs/asyncapi.json.

pub mod appconfig_dir;
pub mod asyncapi;
pub mod book_replica;
pub mod browser;
pub mod contract;
pub mod golden;
pub mod jwt;
pub mod moto;
pub mod regions;
pub mod slow_connections;
pub mod sse;
pub mod stream_fixture;
pub mod test_api;
pub mod ws;
