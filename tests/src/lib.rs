//! Helpers shared by the end-to-end and contract suites: servers the tests start themselves.

pub mod moto;
