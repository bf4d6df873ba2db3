//! The metrics registry (`session_core::metrics_catalog`, which `docs/metrics.md` is generated
//! from) against what the streamer really exposes on `/metrics` after a stream and a push.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use session_core::metrics_catalog::{self, Emitter, Kind, MetricSpec};
use session_tests::book_replica::Replica;
use session_tests::sse;
use session_tests::stream_fixture::{Fixture, read_events};

use crate::ws::{WsClient, ws_url};

/// One metric family as `/metrics` shows it.
#[derive(Debug, Default)]
struct Family {
    /// Its `# TYPE`.
    kind: Option<String>,
    /// Whether it has a `# HELP`.
    help: bool,
    /// The label names its samples carry (`le` of histogram buckets left out).
    labels: BTreeSet<String>,
    /// Whether any sample was seen.
    sampled: bool,
}

/// The families of a Prometheus text exposition, by name.
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("`# TYPE name kind`");
            families.entry(name.to_owned()).or_default().kind = Some(kind.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("`# HELP name text`");
            families.entry(name.to_owned()).or_default().help = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            let series = line.rsplit_once(' ').expect("`series value`").0;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            // A histogram's samples belong to the family their suffix is appended to.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|base| {
                    families
                        .get(*base)
                        .is_some_and(|f| f.kind.as_deref() == Some("histogram"))
                })
                .unwrap_or(name);
            let entry = families.entry(family.to_owned()).or_default();
            entry.sampled = true;
            for pair in labels.trim_end_matches('}').split("\",") {
                if let Some((label, _)) = pair.split_once('=')
                    && label != "le"
                {
                    entry.labels.insert(label.to_owned());
                }
            }
        }
    }
    families
}

/// Every Rust source file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The series names the service's code spells out as string literals, outside the registry.
fn named_in_code() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for crate_dir in ["core", "functions", "streamer", "local"] {
        sources(&root.join(crate_dir).join("src"), &mut files);
    }
    files
        .iter()
        .filter(|path| {
            !path
                .components()
                .any(|c| c.as_os_str() == "metrics_catalog")
        })
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

fn prometheus() -> impl Iterator<Item = &'static MetricSpec> {
    metrics_catalog::METRICS
        .iter()
        .filter(|m| m.emitter == Emitter::Prometheus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamers_metrics_are_exactly_those_the_registry_declares() {
    let fixture = Fixture::start_stack(&["BTC-USD"], 500, |s| {
        s.streamer.push_poll_ms = std::time::Duration::from_millis(100);
    })
    .await;
    // As a browser does, the SSE client takes gzip (so the compressed path is on it too).
    let mut sse = sse::connect(&fixture.ticket_url().await, &[("accept-encoding", "gzip")])
        .await
        .expect("the stream opens");
    let mut replica = Replica::default();
    read_events(&mut sse, &mut replica, 50).await;
    let mut ws = WsClient::open(&ws_url(&fixture, None).await).await;
    let mut pushed = Replica::default();
    ws.read_into(&mut pushed, 50).await;
    let ready = reqwest::get(format!(
        "{}/health/ready",
        fixture.api.stack.endpoints().sse
    ))
    .await
    .unwrap();
    assert_eq!(ready.status(), 200);

    let text = fixture.metrics().await;
    let exposed = families(&text);

    // Every family exposed is declared, with its type, described, and only declared labels.
    for (name, family) in &exposed {
        let spec = metrics_catalog::find(name)
            .unwrap_or_else(|| panic!("{name} is exposed but not in the registry:\n{text}"));
        assert_eq!(spec.emitter, Emitter::Prometheus, "{name}");
        assert_eq!(family.kind.as_deref(), Some(spec.kind.name()), "{name}");
        assert!(family.help, "{name} has no # HELP");
        let declared: BTreeSet<String> = spec.labels.iter().map(|l| l.name.to_owned()).collect();
        assert!(
            family.labels.is_subset(&declared),
            "{name}: labels {:?}, declared {declared:?}",
            family.labels
        );
    }
    // Every declared series is emitted: on this happy path it has a sample; one seen only on
    // failure is at least spelled out by the code that records it.
    let code = named_in_code();
    for spec in prometheus() {
        if spec.only_on_failure {
            assert!(
                code.contains(&format!("\"{}\"", spec.name)),
                "{} is declared but no code names it",
                spec.name
            );
        } else {
            assert!(
                exposed.get(spec.name).is_some_and(|f| f.sampled),
                "{} is declared but was not exposed:\n{text}",
                spec.name
            );
        }
    }
    // The delivery lag was measured for both transports, from the simulator's emit time: on
    // loopback its mean is well under a second (an emit time misread as 0 would make it
    // decades, one taken at the write would make it 0).
    for transport in ["sse", "websocket"] {
        let value = |part: &str| {
            let series = format!(
                "{}_{part}{{transport=\"{transport}\"}} ",
                metrics_catalog::DELIVERY_LAG
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .unwrap_or_else(|| panic!("{series} in:\n{text}"))
                .parse::<f64>()
                .unwrap()
        };
        let mean = value("sum") / value("count");
        assert!(mean > 0.0 && mean < 1.0, "{transport}: mean lag {mean} s");
    }
    // A state set: exactly one readiness state is 1.
    let states: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("streamer_readiness{") && l.ends_with(" 1"))
        .collect();
    assert_eq!(states.len(), 1, "{states:?}");
}

#[test]
fn every_registered_label_of_a_histogram_or_counter_is_bounded_by_a_listed_set() {
    for spec in prometheus() {
        for label in spec.labels {
            assert!(
                !label.values.is_empty(),
                "{}: label {} lists no values",
                spec.name,
                label.name
            );
        }
        if spec.kind == Kind::Histogram {
            assert!(spec.name.ends_with("_seconds") || spec.name.ends_with("_bytes"));
        }
    }
}
