//! Helpers shared by the end-to-end and contract suites: servers the tests start themselves.

pub mod golden;
pub mod jwt;
pub mod moto;
