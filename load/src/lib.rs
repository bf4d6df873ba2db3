//! `session-load`: a load tool for any deployment of the session service, driven by the same
//! endpoints file as the smoke test (whose clients, REST calls and stream readers it reuses).
//!
//! [`cli`] holds the flags, [`run`] drives a run (steady load or the churn soak), [`stats`]
//! records what it measures, and [`report`] writes the markdown table and the SVG plot.

pub mod cli;
pub mod report;
pub mod run;
pub mod stats;
