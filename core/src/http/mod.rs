//! The HTTP edge shared by the REST API and the streamer (feature `http`): every error as one
//! `application/problem+json` document, so both answer alike.

pub mod origin;
pub mod problem;

pub use origin::{OriginRefused, check_origin};
pub use problem::{ApiError, PROBLEM_JSON, Problem};
