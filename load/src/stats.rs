//! What a run measures: per operation or client kind a count, a latency histogram, errors by
//! class, and the gaps and duplicates the stream clients saw; per second of the run the events
//! received, their p99 latency and the errors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use session_smoke::StepError;

/// What a row of the table counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `POST /v1/sessions`.
    CreateSession,
    /// `POST /v1/sessions/{id}/simulators`.
    StartSimulator,
    /// `GET /v1/sessions/{id}/simulators/{id}`.
    SimulatorStatus,
    /// `DELETE /v1/sessions/{id}/simulators/{id}`.
    StopSimulator,
    /// `DELETE /v1/sessions/{id}`.
    DeleteSession,
    /// A ticket (or reconnect ticket) and the SSE response's head.
    SseConnect,
    /// A ticket (or reconnect ticket) and the WebSocket handshake.
    WsConnect,
    /// Events received over SSE; latency from the simulator's `emit_ns`.
    SseEvents,
    /// Events received over WebSocket; latency from the simulator's `emit_ns`.
    WsEvents,
    /// A WebSocket heartbeat's round trip to its `heartbeat_ack`.
    WsHeartbeat,
}

impl Kind {
    /// Every kind, in the table's order.
    pub const ALL: [Self; 10] = [
        Self::CreateSession,
        Self::StartSimulator,
        Self::SimulatorStatus,
        Self::StopSimulator,
        Self::DeleteSession,
        Self::SseConnect,
        Self::WsConnect,
        Self::SseEvents,
        Self::WsEvents,
        Self::WsHeartbeat,
    ];

    /// The row's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateSession => "create session",
            Self::StartSimulator => "start simulator",
            Self::SimulatorStatus => "simulator status",
            Self::StopSimulator => "stop simulator",
            Self::DeleteSession => "delete session",
            Self::SseConnect => "SSE connect",
            Self::WsConnect => "WebSocket connect",
            Self::SseEvents => "SSE events",
            Self::WsEvents => "WebSocket events",
            Self::WsHeartbeat => "WebSocket heartbeat",
        }
    }

    /// Whether the row counts stream events (gaps and duplicates apply).
    pub fn is_stream(self) -> bool {
        matches!(self, Self::SseEvents | Self::WsEvents)
    }
}

/// One row's figures.
#[derive(Debug, Clone)]
pub struct Row {
    /// Successes (events received, for a stream row).
    pub count: u64,
    /// Latency of the successes, in microseconds.
    pub latency: Histogram<u64>,
    /// Failures by class (`http-429`, `unreachable`, `timeout`...).
    pub errors: BTreeMap<String, u64>,
    /// Sequence numbers skipped (stream rows).
    pub gaps: u64,
    /// Events received again (stream rows).
    pub duplicates: u64,
}

impl Row {
    fn new() -> Self {
        Self {
            count: 0,
            latency: histogram(),
            errors: BTreeMap::new(),
            gaps: 0,
            duplicates: 0,
        }
    }

    /// Failures of every class.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One second of the run.
#[derive(Debug, Clone)]
pub struct Second {
    /// Stream events received in it.
    pub events: u64,
    /// Their latency, in microseconds.
    pub latency: Histogram<u64>,
    /// Failures of any kind in it.
    pub errors: u64,
}

/// Resident memory read after a wave of the churn soak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemorySample {
    /// The wave (0: before the first).
    pub wave: usize,
    /// Seconds since the run started.
    pub at_secs: f64,
    /// Resident bytes.
    pub resident_bytes: u64,
    /// What the streamer still held then, when its `/metrics` could be read.
    pub streamer: Option<StreamerHeld>,
}

/// What the streamer holds, from its `/metrics`: the streams still registered (a closed one
/// lingers) and the bytes of their replay windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamerHeld {
    /// `streamer_streams`.
    pub streams: u64,
    /// `streamer_window_bytes`.
    pub window_bytes: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The rows, by kind.
    pub rows: BTreeMap<Kind, Row>,
    /// The run, second by second.
    pub seconds: Vec<Second>,
    /// How long the run measured.
    pub elapsed: Duration,
    /// Resident memory between waves (churn soak only).
    pub memory: Vec<MemorySample>,
}

/// The shared recorder every task of a run writes to.
#[derive(Debug, Clone)]
pub struct Recorder {
    started: Instant,
    figures: Arc<Mutex<Figures>>,
}

/// The most seconds a run records (24 hours): the per-second series is bounded.
const MAX_SECONDS: usize = 86_400;

fn histogram() -> Histogram<u64> {
    // 1 µs to an hour at 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| unreachable!("the bounds are valid"))
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            figures: Arc::new(Mutex::new(Figures {
                rows: Kind::ALL.iter().map(|&k| (k, Row::new())).collect(),
                seconds: Vec::new(),
                elapsed: Duration::ZERO,
                memory: Vec::new(),
            })),
        }
    }

    /// Seconds since the recorder started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Figures, usize) -> T) -> T {
        let second = (self.started.elapsed().as_secs() as usize).min(MAX_SECONDS - 1);
        let mut figures = self.figures.lock().unwrap_or_else(PoisonError::into_inner);
        while figures.seconds.len() <= second {
            figures.seconds.push(Second {
                events: 0,
                latency: histogram(),
                errors: 0,
            });
        }
        f(&mut figures, second)
    }

    /// A success of `kind` that took `latency`.
    pub fn success(&self, kind: Kind, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        self.with(|figures, second| {
            let row = figures
                .rows
                .get_mut(&kind)
                .unwrap_or_else(|| unreachable!());
            row.count += 1;
            row.latency.saturating_record(micros);
            if kind.is_stream() {
                let second = &mut figures.seconds[second];
                second.events += 1;
                second.latency.saturating_record(micros);
            }
        });
    }

    /// A failure of `kind`, of class `class`.
    pub fn error(&self, kind: Kind, class: &str) {
        self.with(|figures, second| {
            let row = figures
                .rows
                .get_mut(&kind)
                .unwrap_or_else(|| unreachable!());
            *row.errors.entry(class.to_owned()).or_default() += 1;
            figures.seconds[second].errors += 1;
        });
    }

    /// Gaps (sequence numbers skipped) and duplicates a stream client of `kind` saw.
    pub fn sequence(&self, kind: Kind, gaps: u64, duplicates: u64) {
        if gaps == 0 && duplicates == 0 {
            return;
        }
        self.with(|figures, _| {
            let row = figures
                .rows
                .get_mut(&kind)
                .unwrap_or_else(|| unreachable!());
            row.gaps += gaps;
            row.duplicates += duplicates;
        });
    }

    /// Resident memory after `wave`, and what the streamer held then.
    pub fn memory(&self, wave: usize, resident_bytes: u64, streamer: Option<StreamerHeld>) {
        let at_secs = self.elapsed().as_secs_f64();
        self.with(|figures, _| {
            figures.memory.push(MemorySample {
                wave,
                at_secs,
                resident_bytes,
                streamer,
            });
        });
    }

    /// Events and errors so far: for the progress bar.
    pub fn totals(&self) -> (u64, u64) {
        self.with(|figures, _| {
            let events = Kind::ALL
                .iter()
                .filter(|k| k.is_stream())
                .map(|k| figures.rows[k].count)
                .sum();
            let errors = figures.rows.values().map(Row::error_count).sum();
            (events, errors)
        })
    }

    /// The figures so far.
    pub fn figures(&self) -> Figures {
        let elapsed = self.elapsed();
        self.with(|figures, _| Figures {
            elapsed,
            ..figures.clone()
        })
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// A failure's class for the table: the HTTP status, or what kind of failure it was.
pub fn class(error: &StepError) -> String {
    match error {
        StepError::Status { status, .. } => format!("http-{status}"),
        StepError::Unreachable { .. } => "unreachable".to_owned(),
        StepError::Answer { .. } => "bad-answer".to_owned(),
        StepError::Timeout(_) => "timeout".to_owned(),
        StepError::Sequence(_) => "sequence".to_owned(),
        StepError::Check(_) => "closed".to_owned(),
        StepError::Endpoints(_) | StepError::Tls(_) => "setup".to_owned(),
    }
}

/// Gap and duplicate counting from event ids, as a frontend checks its stream: a snapshot sets
/// the position, and each sequenced event after it must carry the next number of its epoch.
/// Unlike the smoke test's `Sequence`, it counts and carries on instead of failing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracker {
    position: Option<session_core::domain::EventId>,
    /// Sequence numbers skipped.
    pub gaps: u64,
    /// Events received again.
    pub duplicates: u64,
}

impl Tracker {
    /// Takes an event's type and id (events without an id are out of band). Returns whether it
    /// is new (not a repeat).
    pub fn apply(&mut self, kind: &str, id: Option<&str>) -> bool {
        let Some(id) = id.and_then(|id| session_core::domain::EventId::parse("id", id).ok()) else {
            return true;
        };
        if kind == "snapshot" {
            // A resume that could not replay starts over from a snapshot: a new position.
            self.position = Some(id);
            return true;
        }
        let Some(at) = self.position else {
            return true;
        };
        if id.epoch == at.epoch && id.sequence <= at.sequence {
            self.duplicates += 1;
            return false;
        }
        if id.epoch == at.epoch {
            self.gaps += id.sequence - at.sequence - 1;
        } else {
            self.gaps += 1;
        }
        self.position = Some(id);
        true
    }

    /// The last event id, as `last_event_id` of a reconnect.
    pub fn last_event_id(&self) -> Option<String> {
        self.position
            .map(|id| format!("{}-{}", id.epoch, id.sequence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_counts_skipped_numbers_and_repeats_from_the_snapshot_on() {
        let mut tracker = Tracker::default();
        assert!(
            tracker.apply("delta", Some("3-1")),
            "before a snapshot: not judged"
        );
        tracker.apply("snapshot", Some("3-10"));
        assert!(tracker.apply("delta", Some("3-11")));
        assert!(tracker.apply("trade", Some("3-14")));
        assert!(!tracker.apply("delta", Some("3-12")));
        assert!(tracker.apply("status", None));
        assert_eq!((tracker.gaps, tracker.duplicates), (2, 1));
        assert_eq!(tracker.last_event_id().as_deref(), Some("3-14"));
    }

    #[test]
    fn a_recorder_sums_rows_and_seconds() {
        let recorder = Recorder::new();
        recorder.success(Kind::SseEvents, Duration::from_millis(3));
        recorder.success(Kind::CreateSession, Duration::from_millis(5));
        recorder.error(Kind::CreateSession, "http-429");
        recorder.sequence(Kind::SseEvents, 1, 2);
        let figures = recorder.figures();
        let sse = &figures.rows[&Kind::SseEvents];
        assert_eq!((sse.count, sse.gaps, sse.duplicates), (1, 1, 2));
        assert_eq!(figures.rows[&Kind::CreateSession].errors["http-429"], 1);
        assert_eq!(figures.seconds[0].events, 1);
        assert_eq!(figures.seconds[0].errors, 1);
        assert_eq!(recorder.totals(), (1, 1));
    }
}
