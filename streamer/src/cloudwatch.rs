//! The streamer's key figures published to CloudWatch with `PutMetricData`.
//!
//! A background task reads the process's Prometheus recorder (the same figures `/metrics`
//! shows: nothing on the data path records twice) every `streamer.cloudwatch_interval_ms`,
//! turns it into a [`Snapshot`] (counters as the change since the last publish, gauges as
//! they stand, histograms as values and counts so CloudWatch can compute percentiles), and
//! publishes it in batches within the API's limits. A failed publish is logged and counted
//! (`streamer_cloudwatch_publish_failures_total`), its data kept for the next attempt (a
//! bounded number of periods), and the next attempt backs off; on drain a last publish is made
//! within a bound. Off when `streamer.cloudwatch_namespace` is unset.
//!
//! Dimensions: `Service` = `streamer` only. A per-pod dimension would make a new metric for
//! every pod that ever ran (pods come and go; CloudWatch keeps and bills each metric), and
//! alarms want the fleet: every pod publishes the same metric, and CloudWatch sums them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::settings::StreamerSettings;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use metrics::counter;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tracing::{info, warn};

/// Most metrics one `PutMetricData` request may carry.
pub const MAX_METRICS_PER_REQUEST: usize = 1000;
/// Most values (with their counts) one datum may carry.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// Periods of unsent data kept while CloudWatch fails; older ones are dropped.
const MAX_PENDING_PERIODS: usize = 10;
/// The longest wait between attempts while publishing fails.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// The bound on the last publish made when the streamer drains.
const DRAIN_PUBLISH_BOUND: Duration = Duration::from_secs(5);
/// The longest one publish (its retries included) may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The one dimension every datum carries.
pub const SERVICE_DIMENSION: (&str, &str) = ("Service", "streamer");

/// How a CloudWatch metric is taken from the Prometheus recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A gauge, as it stands (summed over its labels).
    Gauge,
    /// A counter's change since the last publish (summed over its labels).
    Counter,
    /// A counter's change, only the series whose `label` is `value`.
    CounterWhere(&'static str, &'static str),
    /// A counter's change, only the series whose `label` is not `value`.
    CounterWhereNot(&'static str, &'static str),
    /// A histogram's new observations, as values (bucket bounds) and counts.
    Histogram,
}

/// One published metric: its CloudWatch name, the Prometheus series it comes from, how, and
/// its unit.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// Its CloudWatch name.
    pub name: &'static str,
    /// The Prometheus series it is read from.
    pub series: &'static str,
    /// How it is read.
    pub source: Source,
    /// Its CloudWatch unit.
    pub unit: &'static str,
}

const fn published(
    name: &'static str,
    series: &'static str,
    source: Source,
    unit: &'static str,
) -> Published {
    Published {
        name,
        series,
        source,
        unit,
    }
}

/// Every metric the streamer publishes to CloudWatch.
pub const PUBLISHED: &[Published] = &[
    published("SseClients", "streamer_sse_clients", Source::Gauge, "Count"),
    published(
        "Connections",
        "streamer_connections",
        Source::Gauge,
        "Count",
    ),
    published("Streams", "streamer_streams", Source::Gauge, "Count"),
    published(
        "EventsDelivered",
        "streamer_events_delivered_total",
        Source::Counter,
        "Count",
    ),
    published(
        "BytesDelivered",
        "streamer_delivered_bytes_total",
        Source::Counter,
        "Bytes",
    ),
    published(
        "ClientQueueBytes",
        "streamer_client_queue_bytes",
        Source::Histogram,
        "Bytes",
    ),
    published(
        "DeliveryLag",
        "streamer_delivery_lag_seconds",
        Source::Histogram,
        "Seconds",
    ),
    published(
        "Conflations",
        "streamer_conflations_total",
        Source::Counter,
        "Count",
    ),
    published(
        "SlowClientsClosed",
        "streamer_slow_clients_closed_total",
        Source::Counter,
        "Count",
    ),
    published(
        "PushPostsOk",
        "streamer_ws_posts_total",
        Source::CounterWhere("outcome", "ok"),
        "Count",
    ),
    published(
        "PushPostsFailed",
        "streamer_ws_posts_total",
        Source::CounterWhereNot("outcome", "ok"),
        "Count",
    ),
    published(
        "PusherErrors",
        "streamer_pusher_errors_total",
        Source::Counter,
        "Count",
    ),
    published(
        "LeasesHeld",
        "streamer_push_sessions",
        Source::Gauge,
        "Count",
    ),
    published(
        "AdmissionRefusals",
        "streamer_admission_refusals_total",
        Source::Counter,
        "Count",
    ),
    published(
        "UpstreamReconnects",
        "streamer_upstream_reconnects_total",
        Source::Counter,
        "Count",
    ),
];

/// The Prometheus counter of failed publishes.
pub const PUBLISH_FAILURES: &str = "streamer_cloudwatch_publish_failures_total";

/// One series' sample of a Prometheus text rendering.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the Prometheus text format (`name{a="b",…} value`), skipping comments.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// The figures of one period, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When it was taken.
    pub at: SystemTime,
    /// One per published metric.
    pub figures: Vec<Figure>,
}

/// One metric's figure of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Its CloudWatch name.
    pub name: &'static str,
    /// Its CloudWatch unit.
    pub unit: &'static str,
    /// A gauge's or counter's value.
    pub value: Option<f64>,
    /// A histogram's new observations: values with their counts.
    pub values: Vec<(f64, f64)>,
}

/// Turns successive renderings into snapshots: counters and histograms as their change.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// Each cumulative series' value at the last snapshot, by its rendered key.
    last: HashMap<String, f64>,
}

impl Snapshots {
    /// The snapshot of `rendered` (the recorder's text), relative to the previous one.
    pub fn take(&mut self, rendered: &str, at: SystemTime) -> Snapshot {
        let samples = parse(rendered);
        let mut delta = |s: &Sample| {
            let key = format!("{}{:?}", s.name, s.labels);
            let before = self.last.insert(key, s.value).unwrap_or(0.0);
            // A counter that went down was reset (a restart of the recorder): all of it is new.
            if s.value >= before {
                s.value - before
            } else {
                s.value
            }
        };
        let label = |s: &Sample, name: &str| {
            s.labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut figures = Vec::with_capacity(PUBLISHED.len());
        for p in PUBLISHED {
            let mut figure = Figure {
                name: p.name,
                unit: p.unit,
                value: None,
                values: Vec::new(),
            };
            match p.source {
                Source::Gauge => {
                    let sum: f64 = samples
                        .iter()
                        .filter(|s| s.name == p.series)
                        .map(|s| s.value)
                        .sum();
                    figure.value = Some(sum);
                }
                Source::Counter | Source::CounterWhere(..) | Source::CounterWhereNot(..) => {
                    let sum: f64 = samples
                        .iter()
                        .filter(|s| s.name == p.series)
                        .filter(|s| match p.source {
                            Source::CounterWhere(l, v) => label(s, l).as_deref() == Some(v),
                            Source::CounterWhereNot(l, v) => label(s, l).as_deref() != Some(v),
                            _ => true,
                        })
                        .map(&mut delta)
                        .sum();
                    figure.value = Some(sum);
                }
                Source::Histogram => {
                    let bucket = format!("{}_bucket", p.series);
                    // Cumulative bucket counts by upper bound; each bucket's own new count is
                    // published at its upper bound (the last finite one for `+Inf`).
                    let mut buckets: Vec<(f64, f64)> = samples
                        .iter()
                        .filter(|s| s.name == bucket)
                        .filter_map(|s| {
                            let le = label(s, "le")?;
                            let bound = if le == "+Inf" {
                                f64::INFINITY
                            } else {
                                le.parse().ok()?
                            };
                            Some((bound, delta(s)))
                        })
                        .collect();
                    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let mut values: Vec<(f64, f64)> = Vec::new();
                    let mut below = 0.0;
                    let mut last_finite = 0.0;
                    for (bound, cumulative) in buckets {
                        let count = cumulative - below;
                        below = cumulative;
                        let value = if bound.is_finite() {
                            bound
                        } else {
                            last_finite
                        };
                        last_finite = value;
                        if count > 0.0 {
                            match values.last_mut() {
                                Some((v, c)) if v.total_cmp(&value).is_eq() => *c += count,
                                _ => values.push((value, count)),
                            }
                        }
                    }
                    values.truncate(MAX_VALUES_PER_DATUM);
                    figure.values = values;
                }
            }
            figures.push(figure);
        }
        Snapshot { at, figures }
    }
}

impl Snapshot {
    /// Its data, one datum per metric (a histogram with no new observation is left out).
    pub fn data(&self) -> Vec<MetricDatum> {
        let dimension = Dimension::builder()
            .name(SERVICE_DIMENSION.0)
            .value(SERVICE_DIMENSION.1)
            .build();
        self.figures
            .iter()
            .filter(|f| f.value.is_some() || !f.values.is_empty())
            .map(|f| {
                let builder = MetricDatum::builder()
                    .metric_name(f.name)
                    .unit(StandardUnit::from(f.unit))
                    .dimensions(dimension.clone())
                    .timestamp(DateTime::from(self.at))
                    .set_value(f.value);
                f.values
                    .iter()
                    .fold(builder, |b, (value, count)| b.values(*value).counts(*count))
                    .build()
            })
            .collect()
    }
}

/// The publisher: a CloudWatch client, the namespace, and what it reads.
#[derive(Debug)]
pub struct Publisher {
    client: Client,
    namespace: String,
    interval: Duration,
    recorder: PrometheusHandle,
}

impl Publisher {
    /// The publisher the settings ask for: `None` when `streamer.cloudwatch_namespace` is unset.
    pub async fn from_settings(
        settings: &StreamerSettings,
        recorder: PrometheusHandle,
    ) -> Option<Self> {
        use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
        let namespace = settings.cloudwatch_namespace.clone()?;
        let builder = match settings.cloudwatch_endpoint.as_deref() {
            // A plain-HTTP endpoint is one on this machine (a test's, the local stack's): it
            // checks no signature, so dummy credentials and region, as for the other local
            // AWS endpoints.
            Some(endpoint) if endpoint.starts_with("http://") => {
                aws_sdk_cloudwatch::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new("us-east-1"))
                    .credentials_provider(Credentials::new("local", "local", None, None, "local"))
                    .endpoint_url(endpoint)
            }
            endpoint => {
                let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
                let builder = aws_sdk_cloudwatch::config::Builder::from(&shared);
                match endpoint {
                    Some(endpoint) => builder.endpoint_url(endpoint),
                    None => builder,
                }
            }
        }
        .app_name(session_core::component::Component::Streamer.app_name())
        // A publish never waits long: the next period carries what it could not send.
        .timeout_config(
            aws_sdk_cloudwatch::config::timeout::TimeoutConfig::builder()
                .operation_timeout(PUBLISH_TIMEOUT)
                .build(),
        );
        Some(Self {
            client: Client::from_conf(builder.build()),
            namespace,
            interval: settings.cloudwatch_interval_ms,
            recorder,
        })
    }

    /// Publishes every interval until `draining`, then once more (within a bound) and returns.
    /// Never fails: a failed publish is logged, counted and retried later.
    pub async fn run(self, mut draining: watch::Receiver<bool>) {
        info!(namespace = %self.namespace, interval = ?self.interval, "publishing metrics to CloudWatch");
        let mut snapshots = Snapshots::default();
        // Counters count from the previous snapshot: the first one starts the period.
        snapshots.take(&self.recorder.render(), SystemTime::now());
        let mut pending: Vec<Vec<MetricDatum>> = Vec::new();
        let mut wait = self.interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = crate::drain::drained(&mut draining) => {
                    pending.push(snapshots.take(&self.recorder.render(), SystemTime::now()).data());
                    if tokio::time::timeout(DRAIN_PUBLISH_BOUND, self.publish(&mut pending)).await.is_err() {
                        warn!("the last CloudWatch publish did not finish in time");
                    }
                    return;
                }
            }
            pending.push(
                snapshots
                    .take(&self.recorder.render(), SystemTime::now())
                    .data(),
            );
            if pending.len() > MAX_PENDING_PERIODS {
                pending.remove(0);
            }
            wait = if self.publish(&mut pending).await {
                self.interval
            } else {
                (wait * 2).min(MAX_BACKOFF.max(self.interval))
            };
        }
    }

    /// Sends every pending datum, in requests within the API's limits; what was sent leaves
    /// `pending`. False when a request failed (logged and counted).
    async fn publish(&self, pending: &mut Vec<Vec<MetricDatum>>) -> bool {
        let data: Vec<MetricDatum> = pending.iter().flatten().cloned().collect();
        let mut sent = 0;
        for batch in data.chunks(MAX_METRICS_PER_REQUEST) {
            let result = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(batch.to_vec()))
                .send()
                .await;
            if let Err(e) = result {
                counter!(PUBLISH_FAILURES).increment(1);
                warn!(error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&e), "CloudWatch publish failed; retrying later");
                // Keep what was not sent, as one period.
                let rest = data[sent..].to_vec();
                pending.clear();
                pending.push(rest);
                return false;
            }
            sent += batch.len();
        }
        pending.clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_publish_their_change_and_histograms_their_new_observations() {
        let mut snapshots = Snapshots::default();
        let t = SystemTime::UNIX_EPOCH;
        snapshots.take(
            "streamer_events_delivered_total 10\n\
             streamer_ws_posts_total{outcome=\"ok\"} 4\n\
             streamer_delivery_lag_seconds_bucket{le=\"0.01\"} 1\n\
             streamer_delivery_lag_seconds_bucket{le=\"0.1\"} 1\n\
             streamer_delivery_lag_seconds_bucket{le=\"+Inf\"} 1\n",
            t,
        );
        let snapshot = snapshots.take(
            "# TYPE x counter\nstreamer_events_delivered_total 25\nstreamer_sse_clients 3\n\
             streamer_ws_posts_total{outcome=\"ok\"} 6\n\
             streamer_ws_posts_total{outcome=\"gone\"} 2\n\
             streamer_delivery_lag_seconds_bucket{le=\"0.01\"} 3\n\
             streamer_delivery_lag_seconds_bucket{le=\"0.1\"} 4\n\
             streamer_delivery_lag_seconds_bucket{le=\"+Inf\"} 5\n",
            t,
        );
        let figure = |name: &str| {
            snapshot
                .figures
                .iter()
                .find(|f| f.name == name)
                .unwrap()
                .clone()
        };
        assert_eq!(figure("EventsDelivered").value, Some(15.0));
        assert_eq!(figure("SseClients").value, Some(3.0));
        assert_eq!(figure("PushPostsOk").value, Some(2.0));
        assert_eq!(figure("PushPostsFailed").value, Some(2.0));
        assert_eq!(figure("DeliveryLag").values, vec![(0.01, 2.0), (0.1, 2.0)]);
        assert!(figure("ClientQueueBytes").values.is_empty());
        assert_eq!(snapshot.data().len(), PUBLISHED.len() - 1);
    }
}
