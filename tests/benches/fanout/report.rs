//! The Markdown report: the steps, each target's highest sustained delivery rate and the
//! ratio, and memory per idle connection.

use std::fmt::Write as _;

use crate::measure::{Memory, Step, Target};

/// Everything one run measured, and what it ran on.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Lines about the run (command, host, versions, method), in order.
    pub(crate) context: Vec<String>,
    pub(crate) steps: Vec<Step>,
    pub(crate) memory: Vec<Memory>,
    /// Measurements that could not be made.
    pub(crate) errors: Vec<String>,
}

impl Report {
    pub(crate) fn markdown(&self, counts: &[usize], targets: &[Target]) -> String {
        let mut out = String::new();
        for line in &self.context {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        self.steps_table(&mut out);
        self.summary(&mut out, counts, targets);
        self.side_by_side(&mut out, counts, targets);
        self.tracing_table(&mut out, counts, targets);
        self.memory_table(&mut out, counts, targets);
        if !self.errors.is_empty() {
            out.push_str("\nNot measured:\n\n");
            for error in &self.errors {
                let _ = writeln!(out, "- {}", error.replace('\n', " "));
            }
        }
        out
    }

    fn steps_table(&self, out: &mut String) {
        out.push_str(
            "| target | subscribers | publish rate (ev/s per stream) | delivered ev/s | \
             latency p50 (ms) | p99 (ms) | max (ms) | missing | duplicate | \
             CPU cores: server / client / other | sustained |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
        );
        let mut notes = Vec::new();
        for step in &self.steps {
            let (p50, p99, max) = step.latency_ms();
            let why = step.shortfalls();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                step.target,
                group(step.subscribers as u64),
                group(u64::from(step.rate)),
                group(step.delivered_per_sec().round() as u64),
                ms(p50),
                ms(p99),
                ms(max),
                group(step.totals.missing),
                group(step.totals.duplicates),
                step.cpu_cell(),
                if why.is_empty() {
                    "yes".to_owned()
                } else {
                    format!("no: {}", why.join("; "))
                }
            );
            let mut note = Vec::new();
            if step.totals.resyncs > 0 {
                note.push(format!(
                    "{} snapshots or epoch changes after the first event (their skipped \
                     events count as missing)",
                    group(step.totals.resyncs)
                ));
            }
            if step.totals.notices > 0 {
                note.push(format!(
                    "{} events without a sequence, the first `{}`",
                    group(step.totals.notices),
                    step.totals.first_notice.as_deref().unwrap_or_default()
                ));
            }
            if let Some(error) = &step.first_connect_error {
                note.push(format!(
                    "{} connections failed, the first: {}",
                    group(step.failed_connects as u64),
                    error.replace('\n', " ")
                ));
            } else if let Some(failure) = &step.totals.first_failure {
                note.push(format!(
                    "{} clients failed, the first: {}",
                    group(step.totals.failed as u64),
                    failure.replace('\n', " ")
                ));
            }
            if let Some(publisher) = &step.publisher {
                note.push(format!(
                    "publisher: {} events to {} channels, publish {} ms mean, {} ms max, \
                     backlog ≤ {}, {:.2} cores{}",
                    group(publisher.events),
                    publisher.channels,
                    ms(publisher.mean_publish.as_secs_f64() * 1e3),
                    ms(publisher.max_publish.as_secs_f64() * 1e3),
                    publisher.max_backlog,
                    step.cpu.publisher,
                    publisher
                        .error
                        .as_ref()
                        .map_or_else(String::new, |e| format!(", stopped: {e}"))
                ));
            }
            if !note.is_empty() {
                notes.push(format!(
                    "- {} × {} at {} ev/s: {}.",
                    step.target,
                    group(step.subscribers as u64),
                    step.rate,
                    note.join("; ")
                ));
            }
        }
        if !notes.is_empty() {
            out.push('\n');
            for note in notes {
                let _ = writeln!(out, "{note}");
            }
        }
    }

    fn summary(&self, out: &mut String, counts: &[usize], targets: &[Target]) {
        let both = targets.contains(&Target::Streamer) && targets.contains(&Target::Nchan);
        out.push_str(
            "\nHighest delivery, in events/s to all clients. Sustained: delivered ≥ 99% of \
             rate × subscribers, no missing event, every connection streaming, and p99 < 50 ms; \
             lossless: the same but for the p99 (shown). “≥” marks a target's highest rate \
             measured: its limit lies above.\n\n| subscribers | criterion |",
        );
        for target in targets {
            let _ = write!(out, " {target} |");
        }
        if both {
            out.push_str(" streamer / nchan | target ≥ 1.5× |");
        }
        out.push_str("\n| ---: | --- |");
        for _ in targets {
            out.push_str(" ---: |");
        }
        if both {
            out.push_str(" ---: | --- |");
        }
        out.push('\n');
        for &count in counts {
            for sustained in [true, false] {
                let criterion = if sustained { "sustained" } else { "lossless" };
                let _ = write!(out, "| {} | {criterion} |", group(count as u64));
                for &target in targets {
                    let cell = self.best(target, count, sustained).map_or_else(
                        || "none".to_owned(),
                        |best| {
                            let mut cell = String::new();
                            if best.top {
                                cell.push_str("≥ ");
                            }
                            cell.push_str(&group(best.step.delivered_per_sec().round() as u64));
                            if !sustained {
                                let _ = write!(cell, " (p99 {} ms)", ms(best.step.latency_ms().1));
                            }
                            cell
                        },
                    );
                    let _ = write!(out, " {cell} |");
                }
                if both {
                    let streamer = self.best(Target::Streamer, count, sustained);
                    let nchan = self.best(Target::Nchan, count, sustained);
                    if let (Some(streamer), Some(nchan)) = (streamer, nchan) {
                        let ratio = streamer.step.delivered_per_sec()
                            / nchan.step.delivered_per_sec().max(1.0);
                        let bound = if streamer.top && !nchan.top {
                            "≥ "
                        } else {
                            ""
                        };
                        let met = match (sustained, ratio >= 1.5) {
                            (false, _) => "–",
                            (true, true) => "met",
                            (true, false) if streamer.top => "not shown",
                            (true, false) => "not met",
                        };
                        let _ = write!(out, " {bound}{ratio:.2}× | {met} |");
                    } else {
                        let met = if sustained { "not measured" } else { "–" };
                        let _ = write!(out, " – | {met} |");
                    }
                }
                out.push('\n');
            }
        }
    }

    /// Latency of every target at each rate they all ran (the first step at that rate), and
    /// the streamer's p99 against nchan's and the floor's.
    fn side_by_side(&self, out: &mut String, counts: &[usize], targets: &[Target]) {
        let shown: Vec<Target> = [Target::Streamer, Target::Nchan, Target::Floor]
            .into_iter()
            .filter(|t| targets.contains(t))
            .collect();
        if shown.len() < 2 || !shown.contains(&Target::Streamer) {
            return;
        }
        out.push_str(
            "\nSide by side at equal load (the first step of each target at each rate): \
             delivered events/s, p50 / p99 in ms.\n\n| subscribers | rate (ev/s per stream) |",
        );
        for target in &shown {
            let _ = write!(out, " {target} |");
        }
        out.push_str(" streamer p99 / nchan p99 | streamer p99 / floor p99 |\n| ---: | ---: |");
        for _ in &shown {
            out.push_str(" --- |");
        }
        out.push_str(" ---: | ---: |\n");
        for &count in counts {
            let mut rates: Vec<u32> = self
                .steps
                .iter()
                .filter(|s| s.subscribers == count && s.target == Target::Streamer)
                .map(|s| s.rate)
                .collect();
            rates.sort_unstable();
            rates.dedup();
            for rate in rates {
                let step = |target: Target| {
                    self.steps
                        .iter()
                        .find(|s| s.target == target && s.subscribers == count && s.rate == rate)
                };
                let _ = write!(
                    out,
                    "| {} | {} |",
                    group(count as u64),
                    group(u64::from(rate))
                );
                for &target in &shown {
                    let cell = step(target).map_or_else(
                        || "–".to_owned(),
                        |s| {
                            let (p50, p99, _) = s.latency_ms();
                            format!(
                                "{} at {} / {}",
                                group(s.delivered_per_sec().round() as u64),
                                ms(p50),
                                ms(p99)
                            )
                        },
                    );
                    let _ = write!(out, " {cell} |");
                }
                let streamer = step(Target::Streamer).map(|s| s.latency_ms().1);
                for other in [Target::Nchan, Target::Floor] {
                    let ratio = streamer
                        .zip(step(other).map(|s| s.latency_ms().1))
                        .map_or_else(|| "–".to_owned(), |(a, b)| format!("{:.2}×", a / b));
                    let _ = write!(out, " {ratio} |");
                }
                out.push('\n');
            }
        }
    }

    /// The streamer without and with tracing at each rate both ran, as medians over the steps
    /// at that rate (repeat a rate in `--rates` to get several).
    fn tracing_table(&self, out: &mut String, counts: &[usize], targets: &[Target]) {
        if !(targets.contains(&Target::Streamer) && targets.contains(&Target::StreamerTraced)) {
            return;
        }
        out.push_str(
            "\nTracing overhead: the streamer exporting every trace over OTLP (the default \
             sampler, parent-based always-on) against the same build untraced, medians of the \
             steps at each rate.\n\n| subscribers | rate (ev/s per stream) | steps | \
             delivered ev/s untraced | traced | p99 (ms) untraced | traced | spans exported |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for &count in counts {
            let mut rates: Vec<u32> = self
                .steps
                .iter()
                .filter(|s| s.subscribers == count && s.target == Target::StreamerTraced)
                .map(|s| s.rate)
                .collect();
            rates.sort_unstable();
            rates.dedup();
            for rate in rates {
                let of = |target: Target| -> Vec<&Step> {
                    self.steps
                        .iter()
                        .filter(|s| s.target == target && s.subscribers == count && s.rate == rate)
                        .collect()
                };
                let (plain, traced) = (of(Target::Streamer), of(Target::StreamerTraced));
                if plain.is_empty() {
                    continue;
                }
                let delivered =
                    |steps: &[&Step]| median(steps.iter().map(|s| s.delivered_per_sec()).collect());
                let p99 =
                    |steps: &[&Step]| median(steps.iter().map(|s| s.latency_ms().1).collect());
                let spans: u64 = traced.iter().filter_map(|s| s.spans_exported).sum();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} + {} | {} | {} | {} | {} | {} |",
                    group(count as u64),
                    group(u64::from(rate)),
                    plain.len(),
                    traced.len(),
                    group(delivered(&plain).round() as u64),
                    group(delivered(&traced).round() as u64),
                    ms(p99(&plain)),
                    ms(p99(&traced)),
                    group(spans),
                );
            }
        }
    }

    /// The step of `target` at `count` subscribers that delivered most while sustained (or
    /// lossless), and whether it was the highest rate the target was measured at.
    fn best(&self, target: Target, count: usize, sustained: bool) -> Option<Best<'_>> {
        let steps = || {
            self.steps
                .iter()
                .filter(move |s| s.target == target && s.subscribers == count)
        };
        let top_rate = steps().map(|s| s.rate).max()?;
        let step = steps()
            .filter(|s| {
                if sustained {
                    s.sustained()
                } else {
                    s.lossless()
                }
            })
            .max_by(|a, b| a.delivered_per_sec().total_cmp(&b.delivered_per_sec()))?;
        Some(Best {
            step,
            top: step.rate == top_rate,
        })
    }

    fn memory_table(&self, out: &mut String, counts: &[usize], targets: &[Target]) {
        if self.memory.is_empty() {
            return;
        }
        out.push_str(
            "\nMemory per idle SSE connection (resident memory of the server processes with \
             one client on a stream of 1 event/s, then with N more, divided by N):\n\n\
             | target | idle connections | RSS before (MiB) | RSS after (MiB) | per connection (KiB) | processes |\n\
             | --- | ---: | ---: | ---: | ---: | --- |\n",
        );
        for m in &self.memory {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
                m.target,
                group(m.connections as u64),
                m.before as f64 / 1_048_576.0,
                m.after as f64 / 1_048_576.0,
                m.per_connection() / 1024.0,
                match m.target {
                    Target::Streamer | Target::StreamerTraced => {
                        "session-local (streamer, simulator, HTTP API)".to_owned()
                    }
                    Target::Nchan => format!("nginx master + {} workers", m.processes - 1),
                    Target::Floor => "the bench's floor threads".to_owned(),
                }
            );
        }
        if targets.contains(&Target::Streamer) && targets.contains(&Target::Nchan) {
            let per = |target: Target, count: usize| {
                self.memory
                    .iter()
                    .find(|m| m.target == target && m.requested == count && m.connections > 0)
                    .map(Memory::per_connection)
            };
            out.push('\n');
            for &count in counts {
                if let (Some(streamer), Some(nchan)) =
                    (per(Target::Streamer, count), per(Target::Nchan, count))
                {
                    let met = if streamer <= nchan { "met" } else { "not met" };
                    let _ = writeln!(
                        out,
                        "- {} connections: streamer {:.1} KiB, nchan {:.1} KiB per connection: \
                         target (no more than nchan) {met}.",
                        group(count as u64),
                        streamer / 1024.0,
                        nchan / 1024.0
                    );
                }
            }
        }
    }
}

/// A target's best step by one criterion.
struct Best<'a> {
    step: &'a Step,
    /// It was the highest rate measured.
    top: bool,
}

/// `1234567` as `1 234 567`, as docs/performance.md writes numbers.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

fn ms(value: f64) -> String {
    if value.is_nan() {
        "–".to_owned()
    } else if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        f64::midpoint(values[middle - 1], values[middle])
    } else {
        values[middle]
    }
}
