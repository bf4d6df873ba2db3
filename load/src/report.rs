//! The run's results: a markdown table (one row per operation or client kind) and an SVG plot
//! over time (events per second, p99 latency, errors; resident memory in a churn soak). The
//! plot is a few polylines, written by hand: no plotting crate for so little.

use std::fmt::Write as _;

use crate::stats::{Figures, Kind, Row};

/// The markdown table of `figures`, with `command` (how it was run) above it.
pub fn table(figures: &Figures, command: &str) -> String {
    let secs = figures.elapsed.as_secs_f64().max(f64::EPSILON);
    let mut out = String::new();
    let _ = writeln!(out, "`{command}`\n");
    let _ = writeln!(
        out,
        "| operation / client | count | per second | p50 ms | p90 ms | p99 ms | max ms | errors | gaps | duplicates |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
    );
    for kind in Kind::ALL {
        let row = &figures.rows[&kind];
        let (gaps, duplicates) = if kind.is_stream() {
            (row.gaps.to_string(), row.duplicates.to_string())
        } else {
            (String::new(), String::new())
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {gaps} | {duplicates} |",
            kind.name(),
            row.count,
            row.count as f64 / secs,
            quantile(row, 0.5),
            quantile(row, 0.9),
            quantile(row, 0.99),
            quantile(row, 1.0),
            errors(row),
        );
    }
    if !figures.memory.is_empty() {
        let _ = writeln!(
            out,
            "\n| after wave | at s | resident MiB | streamer streams | their windows MiB |\n| ---: | ---: | ---: | ---: | ---: |"
        );
        for sample in &figures.memory {
            let (streams, windows) = sample.streamer.map_or_else(
                || ("–".to_owned(), "–".to_owned()),
                |held| {
                    (
                        held.streams.to_string(),
                        format!("{:.1}", mib(held.window_bytes)),
                    )
                },
            );
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.1} | {streams} | {windows} |",
                sample.wave,
                sample.at_secs,
                mib(sample.resident_bytes)
            );
        }
    }
    out
}

fn quantile(row: &Row, q: f64) -> String {
    if row.count == 0 {
        return "–".to_owned();
    }
    let micros = if q >= 1.0 {
        row.latency.max()
    } else {
        row.latency.value_at_quantile(q)
    };
    format!("{:.1}", micros as f64 / 1000.0)
}

fn errors(row: &Row) -> String {
    if row.errors.is_empty() {
        return "0".to_owned();
    }
    row.errors
        .iter()
        .map(|(class, n)| format!("{class}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

const WIDTH: f64 = 800.0;
const PANEL: f64 = 140.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const GAP: f64 = 40.0;

/// One panel of the plot: a title and points (seconds, value).
struct Series<'a> {
    title: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// The SVG plot of `figures`: events/s, p99 latency (ms) and errors per second over the run,
/// and resident memory (MiB) when a churn soak read it.
pub fn svg(figures: &Figures) -> String {
    let seconds = &figures.seconds;
    let mut panels = vec![
        Series {
            title: "stream events per second",
            color: "#1f77b4",
            points: seconds
                .iter()
                .enumerate()
                .map(|(i, s)| (i as f64, s.events as f64))
                .collect(),
        },
        Series {
            title: "stream event latency p99 (ms)",
            color: "#d62728",
            points: seconds
                .iter()
                .enumerate()
                .filter(|(_, s)| s.events > 0)
                .map(|(i, s)| (i as f64, s.latency.value_at_quantile(0.99) as f64 / 1000.0))
                .collect(),
        },
        Series {
            title: "errors per second",
            color: "#ff7f0e",
            points: seconds
                .iter()
                .enumerate()
                .map(|(i, s)| (i as f64, s.errors as f64))
                .collect(),
        },
    ];
    if !figures.memory.is_empty() {
        panels.push(Series {
            title: "resident memory between waves (MiB)",
            color: "#2ca02c",
            points: figures
                .memory
                .iter()
                .map(|m| (m.at_secs, mib(m.resident_bytes)))
                .collect(),
        });
    }
    let x_max = (seconds.len() as f64)
        .max(figures.elapsed.as_secs_f64())
        .max(1.0);
    let height = GAP + panels.len() as f64 * (PANEL + GAP);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    for (i, series) in panels.iter().enumerate() {
        panel(&mut out, series, GAP + i as f64 * (PANEL + GAP), x_max);
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since the start</text>"#,
        WIDTH / 2.0,
        height - 8.0
    );
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, series: &Series<'_>, top: f64, x_max: f64) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let y_max = series
        .points
        .iter()
        .map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let x = |v: f64| LEFT + v / x_max * plot_width;
    let y = |v: f64| top + PANEL - v / y_max * PANEL;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 6.0,
        series.title
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}" fill="none" stroke="#999"/>"##
    );
    for fraction in [0.0, 0.5, 1.0] {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{:.1}</text>"#,
            LEFT - 4.0,
            y(y_max * fraction) + 4.0,
            y_max * fraction
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{:.0}</text>"#,
            x(x_max * fraction),
            top + PANEL + 14.0,
            x_max * fraction
        );
    }
    if series.points.is_empty() {
        return;
    }
    let points: Vec<String> = series
        .points
        .iter()
        .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
        .collect();
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
        series.color,
        points.join(" ")
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{Recorder, StreamerHeld};

    #[test]
    fn the_table_has_a_row_per_kind_and_the_plot_is_one_svg_element() {
        let recorder = Recorder::new();
        recorder.success(Kind::SseEvents, Duration::from_millis(4));
        recorder.error(Kind::WsConnect, "http-429");
        recorder.memory(1, 64 << 20, None);
        recorder.memory(
            2,
            65 << 20,
            Some(StreamerHeld {
                streams: 4,
                window_bytes: 3 << 19,
            }),
        );
        let figures = recorder.figures();

        let table = table(&figures, "session-load --endpoints e.json");
        let svg = svg(&figures);

        for kind in Kind::ALL {
            assert!(table.contains(&format!("| {} |", kind.name())), "{table}");
        }
        assert!(table.contains("http-429: 1"), "{table}");
        assert!(table.contains("| 1 | 0 | 64.0 | – | – |"), "{table}");
        assert!(table.contains("| 2 | 0 | 65.0 | 4 | 1.5 |"), "{table}");
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
    }
}
