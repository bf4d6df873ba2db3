//! Logging and tracing, set up in one place for every binary.
//!
//! JSON output writes one object per line with the event's fields and the fields of every
//! enclosing span, so the ids a handler puts on its span (`request_id`, `session_id`,
//! `connection_id`) appear on each line it logs.

use std::io;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, TelemetrySettings};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directives do not parse.
    #[error("telemetry.log_filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber was installed already.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// A subscriber writing to `writer` as `settings` say.
///
/// # Errors
/// The filter directives do not parse.
pub fn subscriber<W>(
    settings: &TelemetrySettings,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&settings.log_filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match settings.log_format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        ),
        LogFormat::Pretty => Box::new(builder.compact().finish()),
    })
}

/// Installs the process-wide subscriber, writing to stdout (which Lambda and Kubernetes collect).
///
/// # Errors
/// The filter does not parse or a subscriber is installed already.
pub fn init(settings: &TelemetrySettings) -> Result<(), TelemetryError> {
    tracing::subscriber::set_global_default(subscriber(settings, io::stdout)?)
        .map_err(|_| TelemetryError::AlreadyInstalled)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_carry_the_ids_of_enclosing_spans() {
        let buffer = Buffer::default();
        let settings = TelemetrySettings {
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
        };
        let subscriber = subscriber(&settings, buffer.clone()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", request_id = "req-1");
            let _r = request.enter();
            let session =
                tracing::info_span!("session", session_id = "ses_1", connection_id = "c-1");
            let _s = session.enter();
            tracing::info!(simulators = 2, "session read");
        });
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 1, "{output}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["message"], "session read");
        assert_eq!(line["simulators"], 2);
        assert_eq!(line["level"], "INFO");
        let spans = line["spans"].as_array().unwrap();
        assert_eq!(spans[0]["request_id"], "req-1");
        assert_eq!(spans[1]["session_id"], "ses_1");
        assert_eq!(spans[1]["connection_id"], "c-1");
    }
}
