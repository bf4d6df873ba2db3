//! Placeholder until its issue lands: the Lambda entry points.
