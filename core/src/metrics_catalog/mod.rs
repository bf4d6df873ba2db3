//! Every metric the service emits, declared once: name, kind, unit, labels, meaning, healthy
//! range, the alert that uses it and who emits it.
//!
//! `docs/metrics.md` is rendered from [`METRICS`] ([`render_markdown`]) and checked against the
//! checked-in file by a test; the streamer describes its Prometheus series from it
//! (`# HELP`/`# TYPE`), and a drift test fails when `/metrics` shows a series that is not
//! declared here or a declared one that never appears. Add a metric here first, then emit it.

use std::fmt::Write as _;

mod catalog;

pub use catalog::METRICS;

/// What a metric is, in Prometheus' terms (CloudWatch's are all values with a unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts from 0 when the process does); named `…_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations in buckets (`…_bucket`, `…_sum`, `…_count`).
    Histogram,
}

impl Kind {
    /// The word Prometheus' `# TYPE` line uses.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A metric's unit: base units only (seconds, bytes), so names and dashboards never convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of things, or a 0/1 state.
    Count,
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
}

impl Unit {
    /// How the document names it (CloudWatch's `StandardUnit` spelling).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Seconds => "Seconds",
            Self::Bytes => "Bytes",
        }
    }
}

/// Who emits a metric, and so where it can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emitter {
    /// The streamer's `/metrics` (scraped by Prometheus).
    Prometheus,
    /// `PutMetricData` from a long-lived process.
    CloudWatch,
    /// The Embedded Metric Format in a Lambda's log lines.
    Emf,
}

impl Emitter {
    /// How the document names it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Prometheus => "Prometheus",
            Self::CloudWatch => "CloudWatch",
            Self::Emf => "EMF",
        }
    }
}

/// A label (Prometheus) or dimension (CloudWatch), with its bounded set of values.
#[derive(Debug, Clone, Copy)]
pub struct Label {
    /// The label's name.
    pub name: &'static str,
    /// Every value it takes (or, for a set fixed elsewhere, what bounds it).
    pub values: &'static str,
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// Its name as emitted (for a histogram, without `_bucket`/`_sum`/`_count`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its unit, also the suffix of a Prometheus name (`_seconds`, `_bytes`).
    pub unit: Unit,
    /// Labels or dimensions; each has a bounded set of values.
    pub labels: &'static [Label],
    /// What it means; the `# HELP` text.
    pub help: &'static str,
    /// What it reads when all is well.
    pub healthy: &'static str,
    /// The alerts (PrometheusRule rules or CloudWatch alarms) that use it.
    pub alerts: &'static [&'static str],
    /// Who emits it.
    pub emitter: Emitter,
    /// Seen only once something fails (or an edge case happens): a test of the happy path
    /// checks only that it is described, not that it has a sample.
    pub only_on_failure: bool,
}

impl MetricSpec {
    /// A Prometheus series of the streamer, seen on the happy path.
    const fn streamer(
        name: &'static str,
        kind: Kind,
        unit: Unit,
        help: &'static str,
        healthy: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            unit,
            labels: &[],
            help,
            healthy,
            alerts: &[],
            emitter: Emitter::Prometheus,
            only_on_failure: false,
        }
    }

    const fn labels(mut self, labels: &'static [Label]) -> Self {
        self.labels = labels;
        self
    }

    const fn alerts(mut self, alerts: &'static [&'static str]) -> Self {
        self.alerts = alerts;
        self
    }

    const fn on_failure(mut self) -> Self {
        self.only_on_failure = true;
        self
    }

    /// The same metric, emitted by `emitter` instead.
    const fn emitted_by(mut self, emitter: Emitter) -> Self {
        self.emitter = emitter;
        self
    }
}

const fn label(name: &'static str, values: &'static str) -> Label {
    Label { name, values }
}

/// The buckets of [`DELIVERY_LAG`], in seconds: a page's budget is about 100 ms, so the
/// buckets are finest below it, and reach 10 s for a client that reconnects and replays.
pub const DELIVERY_LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The buckets of [`WS_POST_DURATION`], in seconds (one `@connections` call).
pub const WS_POST_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The buckets of [`CLIENT_QUEUE`], in bytes.
pub const CLIENT_QUEUE_BUCKETS: &[f64] = &[0.0, 1e3, 1e4, 6.4e4, 2.56e5, 1.048_576e6, 4.194_304e6];

/// Event creation (the simulator's `emit_time_unix_nanos`) to written to a client.
pub const DELIVERY_LAG: &str = "streamer_delivery_lag_seconds";
/// One `@connections` post.
pub const WS_POST_DURATION: &str = "streamer_ws_post_duration_seconds";
/// A client's queue depth when it reads.
pub const CLIENT_QUEUE: &str = "streamer_client_queue_bytes";

/// The states of `streamer_readiness`, one 0/1 series each.
pub const READINESS_STATES: &[&str] = &["ok", "degraded", "down", "draining", "full"];

/// The declared metric called `name`, if any.
pub fn find(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.name == name)
}

/// `docs/metrics.md`, rendered from [`METRICS`].
pub fn render_markdown() -> String {
    let mut doc = String::from(
        "# Metrics\n\n\
         Every metric the service emits. Generated from `core/src/metrics_catalog/` \
         (`METRICS`): do not edit by hand; change the registry and run \
         `UPDATE_METRICS_DOC=1 cargo test -p session-tests --test metrics_doc`.\n\n\
         Conventions: base units (seconds, bytes) named in the suffix (`_seconds`, `_bytes`), \
         counters end in `_total`, every label takes one of a fixed set of values (none per \
         session, simulator, connection or client), and every Prometheus series has `# HELP` \
         and `# TYPE`. Histograms are exported as `_bucket`, `_sum` and `_count`. A metric \
         marked *on failure* has no sample until the thing it counts happens.\n",
    );
    for emitter in [Emitter::Prometheus, Emitter::CloudWatch, Emitter::Emf] {
        let metrics: Vec<&MetricSpec> = METRICS.iter().filter(|m| m.emitter == emitter).collect();
        if metrics.is_empty() {
            continue;
        }
        let _ = write!(doc, "\n## {}\n\n", emitter.name());
        doc.push_str("| name | type | unit | labels | meaning | healthy | alert |\n");
        doc.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
        for m in metrics {
            let labels = if m.labels.is_empty() {
                "none".to_owned()
            } else {
                m.labels
                    .iter()
                    .map(|l| format!("`{}`: {}", l.name, l.values))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let meaning = if m.only_on_failure {
                format!("{} *On failure.*", m.help)
            } else {
                m.help.to_owned()
            };
            let alert = if m.alerts.is_empty() {
                "none".to_owned()
            } else {
                m.alerts
                    .iter()
                    .map(|a| match m.emitter {
                        // A PrometheusRule rule's runbook section is named after it.
                        Emitter::Prometheus => {
                            format!("[`{a}`](deploy.md#alert-{})", a.to_lowercase())
                        }
                        Emitter::CloudWatch | Emitter::Emf => format!("`{a}`"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                doc,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                m.name,
                m.kind.name(),
                m.unit.name(),
                labels,
                meaning,
                m.healthy,
                alert,
            );
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_by_the_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} is declared twice", m.name);
            if m.emitter != Emitter::Prometheus {
                continue;
            }
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            let base = m.name.trim_end_matches("_total");
            match m.unit {
                Unit::Seconds => assert!(base.ends_with("_seconds"), "{}", m.name),
                Unit::Bytes => assert!(base.ends_with("_bytes"), "{}", m.name),
                Unit::Count => assert!(
                    !base.ends_with("_seconds") && !base.ends_with("_bytes"),
                    "{}",
                    m.name
                ),
            }
            assert!(!m.help.is_empty() && !m.healthy.is_empty(), "{}", m.name);
        }
    }
}
