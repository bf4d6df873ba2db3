//! The Lambdas' metrics, in CloudWatch's Embedded Metric Format (EMF): one JSON line per
//! operation on stdout, which Lambda sends to CloudWatch Logs and CloudWatch turns into metrics.
//! No API call on the request path.
//!
//! Hand-written: the crates for EMF in Rust (`metrics_cloudwatch_embedded`, `aws-embedded-metrics`)
//! are a `metrics` recorder or are unmaintained; one object of a fixed shape is a few lines of
//! `serde_json`, and a sink given in lets tests read exactly what is written.
//!
//! Namespace [`NAMESPACE`]; dimensions `Service` (the function), `Operation` and `Outcome`,
//! each from a fixed set; two dimension sets, so an alarm can watch one operation or every
//! operation's outcome (`Outcome` = `rate_limited` across the API). Metrics: `Requests`
//! (Count, 1 per operation) and `Latency` (Seconds, the registry's base unit).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// The CloudWatch namespace of every EMF line (the streamer's `PutMetricData` uses it too).
pub const NAMESPACE: &str = "SessionService";
/// The metric counting operations.
pub const REQUESTS: &str = "Requests";
/// The metric of their latency.
pub const LATENCY: &str = "Latency";

/// Where EMF lines go: stdout in Lambda, a buffer in tests.
#[derive(Clone)]
pub struct Emf {
    sink: Arc<Mutex<dyn Write + Send>>,
}

impl std::fmt::Debug for Emf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Emf")
    }
}

impl Emf {
    /// Lines to stdout (Lambda's log stream).
    pub fn stdout() -> Self {
        Self::to(std::io::stdout())
    }

    /// Lines to `sink`.
    pub fn to(sink: impl Write + Send + 'static) -> Self {
        Self {
            sink: Arc::new(Mutex::new(sink)),
        }
    }

    /// Writes one operation's line: `service` did `operation` with `outcome` in `latency`.
    /// A failed write is ignored: metrics never fail a request.
    pub fn record(&self, service: &str, operation: &str, outcome: &str, latency: Duration) {
        let line = line(service, operation, outcome, latency, SystemTime::now());
        if let Ok(mut sink) = self.sink.lock() {
            let _ = writeln!(sink, "{line}");
            let _ = sink.flush();
        }
    }
}

/// The EMF object of one operation.
pub fn line(
    service: &str,
    operation: &str,
    outcome: &str,
    latency: Duration,
    at: SystemTime,
) -> serde_json::Value {
    let timestamp = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service", "Operation", "Outcome"], ["Service", "Outcome"]],
                "Metrics": [
                    { "Name": REQUESTS, "Unit": "Count" },
                    { "Name": LATENCY, "Unit": "Seconds" },
                ],
            }],
        },
        "Service": service,
        "Operation": operation,
        "Outcome": outcome,
        REQUESTS: 1,
        LATENCY: latency.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_its_metrics_and_carries_their_values() {
        let line = line(
            "rest-api",
            "CreateSession",
            "ok",
            Duration::from_millis(12),
            UNIX_EPOCH + Duration::from_secs(2),
        );
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(line["_aws"]["Timestamp"], 2000);
        assert_eq!(directive["Metrics"][1]["Unit"], "Seconds");
        assert_eq!(line["Requests"], 1);
        assert_eq!(line["Latency"], 0.012);
        assert_eq!(line["Operation"], "CreateSession");
    }
}
