//! Logging and tracing, set up in one place for every binary.
//!
//! JSON output writes one object per line with the event's fields and the fields of every
//! enclosing span, so the ids a handler puts on its span (`request_id`, `session_id`,
//! `connection_id`) appear on each line it logs.
//!
//! Distributed traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are exported over OTLP
//! (gRPC, on the tonic every binary already carries) by a `tracing-opentelemetry` layer; unset,
//! no layer is installed at all. A W3C `traceparent` is continued at each entry point
//! ([`continue_trace`]) and sent on each gRPC call ([`TracePropagation`]); the entry spans carry
//! `trace_id` and `span_id`, so every line logged under them does too.

use std::io;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Registry, reload};

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
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol other than `grpc`.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL: {0:?} is not supported (only \"grpc\")")]
    Protocol(String),
    /// The OTLP exporter could not be built (a malformed endpoint).
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The installed subscriber is gone, so its filter cannot be replaced.
    #[error("the log filter could not be replaced: {0}")]
    Reload(#[from] tracing_subscriber::reload::Error),
}

/// Where spans are exported: the standard OpenTelemetry variables, or arguments in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceExport {
    /// The OTLP/gRPC collector (`http://127.0.0.1:4317`); `None`: tracing is off.
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

impl TraceExport {
    /// From `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or `OTEL_EXPORTER_OTLP_ENDPOINT`),
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` only) and `OTEL_SERVICE_NAME` (else `service`, the
    /// part's own name). The sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) is read
    /// by the SDK itself.
    ///
    /// # Errors
    /// The protocol is not `grpc`.
    pub fn from_env(service: &str) -> Result<Self, TelemetryError> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        if let Some(protocol) = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .filter(|p| p != "grpc")
        {
            return Err(TelemetryError::Protocol(protocol));
        }
        Ok(Self {
            endpoint: var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT")),
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_owned()),
        })
    }

    /// The process's tracer provider, batching spans to the collector on a thread of its own;
    /// `None` when no endpoint is set. Must be called inside a Tokio runtime (the exporter's
    /// channel runs on it).
    ///
    /// # Errors
    /// The endpoint is not a valid URL.
    pub fn provider(&self) -> Result<Option<SdkTracerProvider>, TelemetryError> {
        use opentelemetry_otlp::WithExportConfig as _;
        let Some(endpoint) = &self.endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(self.service_name.clone())
            .build();
        Ok(Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        ))
    }
}

/// The provider [`init`] installed, flushed by [`flush`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The log filter of the subscriber [`init`] installed, replaced by [`set_log_filter`].
type FilterHandle = reload::Handle<EnvFilter, Registry>;
static LOG_FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Replaces the log filter of the installed subscriber (a runtime settings change); a no-op
/// when [`init`] did not install one. The traces keep their own level.
///
/// # Errors
/// The directives do not parse, or the subscriber is gone.
pub fn set_log_filter(directives: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(directives)?;
    if let Some(handle) = LOG_FILTER.get() {
        handle.reload(filter)?;
        tracing::info!(log_filter = directives, "log filter replaced");
    }
    Ok(())
}

/// Exports the spans ended so far and waits for the collector's answer (a Lambda calls it
/// before each invocation ends: a frozen environment exports nothing). A no-op when tracing is
/// off. The SDK's flush blocks, so it runs on the blocking pool, leaving the runtime's workers
/// to drive the exporter's channel.
pub async fn flush() {
    let Some(provider) = PROVIDER.get().cloned() else {
        return;
    };
    let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "spans could not be exported");
    }
}

/// Continues the W3C trace of `headers` (`traceparent`, `tracestate`) in `span`, which must not
/// have been entered yet, and records its `trace_id` and `span_id` fields (when the span
/// declares them) for the log lines under it. Without a valid `traceparent`, `span` starts a
/// trace. A no-op when tracing is off.
pub fn continue_trace(span: &tracing::Span, headers: &tonic::codegen::http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when tracing is off or the span was entered already: then it stays a root.
        let _ = span.set_parent(parent);
    }
    record_ids(span);
}

/// Records `span`'s trace and span ids on its `trace_id` and `span_id` fields, when it is
/// sampled.
pub fn record_ids(span: &tracing::Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_sampled() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
        span.record("span_id", tracing::field::display(span_context.span_id()));
    }
}

/// The `traceparent` (and `tracestate`) of `span`, for a request to another part; empty when
/// tracing is off.
pub fn inject(span: &tracing::Span, headers: &mut tonic::codegen::http::HeaderMap) {
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}

/// The response metadata of a `MarketData.Subscribe` naming the trace its simulator was started
/// in (the reference simulator sends it; the streamer links its subscription span to it).
pub const START_TRACEPARENT: &str = "start-traceparent";

/// The `traceparent` of `span`, to be handed on later (a simulator's start, which its
/// subscribers link to); `None` when tracing is off.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = tonic::codegen::http::HeaderMap::new();
    inject(span, &mut headers);
    let value = headers.get("traceparent")?.to_str().ok()?;
    Some(value.to_owned())
}

/// Links `span` to the span of `traceparent` (another trace that caused it): a no-op when the
/// value does not parse or tracing is off.
pub fn link(span: &tracing::Span, traceparent: &str) {
    let mut headers = tonic::codegen::http::HeaderMap::new();
    let Ok(value) = traceparent.parse() else {
        return;
    };
    headers.insert("traceparent", value);
    let linked = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
    span.add_link(linked.span().span_context().clone());
}

/// A tonic interceptor that sends the current span's trace on every call of a gRPC client
/// (see `backend::channel::traced`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracePropagation;

impl tonic::service::Interceptor for TracePropagation {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let (metadata, extensions, message) = request.into_parts();
        let mut headers = metadata.into_headers();
        inject(&tracing::Span::current(), &mut headers);
        Ok(tonic::Request::from_parts(
            tonic::metadata::MetadataMap::from_headers(headers),
            extensions,
            message,
        ))
    }
}

/// The span a gRPC server (`component`: `auth-service`, `exchange-simulator`) runs a call in,
/// continuing the caller's trace: for `tonic::transport::Server::trace_fn`.
pub fn server_span(
    component: &'static str,
    request: &tonic::codegen::http::Request<()>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        otel.name = request.uri().path(),
        component,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    continue_trace(&span, request.headers());
    span
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
    traced_subscriber(settings, None, writer)
}

/// [`subscriber`], exporting spans to `provider` when there is one.
///
/// # Errors
/// The filter directives do not parse.
pub fn traced_subscriber<W>(
    settings: &TelemetrySettings,
    provider: Option<&SdkTracerProvider>,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    Ok(reloadable_subscriber(settings, provider, writer)?.0)
}

/// [`traced_subscriber`], with the handle that replaces its log filter.
fn reloadable_subscriber<W>(
    settings: &TelemetrySettings,
    provider: Option<&SdkTracerProvider>,
    writer: W,
) -> Result<(Box<dyn Subscriber + Send + Sync>, FilterHandle), TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // Reloadable: the runtime settings may change the log level without a restart.
    let (filter, handle) = reload::Layer::new(EnvFilter::try_new(&settings.log_filter)?);
    // Per-layer filters: the log filter chooses which lines are written, not which spans are
    // traced. A global filter would switch tracing off with the logs (`warn` disables every
    // `info` span), so the traces keep their own level: every `info` span.
    let logs = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let traces = provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("session-service"))
            .with_tracked_inactivity(false)
            .with_filter(LevelFilter::INFO)
    });
    Ok((
        Box::new(tracing_subscriber::registry().with(logs).with(traces)),
        handle,
    ))
}

/// Installs the process-wide subscriber, writing to stdout (which Lambda and Kubernetes
/// collect), and exports spans as the OpenTelemetry variables say, as `service` (the part's
/// name) unless `OTEL_SERVICE_NAME` says otherwise.
///
/// # Errors
/// The filter or a variable does not parse, or a subscriber is installed already.
pub fn init(settings: &TelemetrySettings, service: &str) -> Result<(), TelemetryError> {
    init_with(settings, &TraceExport::from_env(service)?)
}

/// [`init`], exporting as `export` says (tests point it at their own collector).
///
/// # Errors
/// The filter does not parse, or a subscriber is installed already.
pub fn init_with(settings: &TelemetrySettings, export: &TraceExport) -> Result<(), TelemetryError> {
    let provider = export.provider()?;
    let (subscriber, filter) = reloadable_subscriber(settings, provider.as_ref(), io::stdout)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    let _ = LOG_FILTER.set(filter);
    if let Some(provider) = provider {
        let _ = PROVIDER.set(provider);
    }
    Ok(())
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

    /// A JSON line logged under an entry span that continued `traceparent`.
    fn line_under_a_continued_trace(provider: Option<&SdkTracerProvider>) -> serde_json::Value {
        let buffer = Buffer::default();
        let settings = TelemetrySettings {
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
        };
        let subscriber = traced_subscriber(&settings, provider, buffer.clone()).unwrap();
        let mut headers = tonic::codegen::http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            continue_trace(&span, &headers);
            let _entered = span.enter();
            tracing::info!("handled");
        });
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        serde_json::from_str(output.lines().next().unwrap()).unwrap()
    }

    #[test]
    fn json_lines_carry_the_continued_trace_id_and_their_own_span_id_when_traced() {
        let provider = SdkTracerProvider::builder().build();
        let line = line_under_a_continued_trace(Some(&provider));
        let span = &line["spans"][0];
        assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let span_id = span["span_id"].as_str().unwrap();
        assert_eq!(span_id.len(), 16);
        assert_ne!(span_id, "00f067aa0ba902b7", "a span of its own, a child");
    }

    #[test]
    fn a_replaced_log_filter_changes_which_lines_are_written_at_once() {
        let buffer = Buffer::default();
        let settings = TelemetrySettings {
            log_format: LogFormat::Json,
            log_filter: "warn".to_owned(),
        };
        let (subscriber, filter) = reloadable_subscriber(&settings, None, buffer.clone()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before");
            filter.reload(EnvFilter::new("info")).unwrap();
            tracing::info!("after");
        });
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(!output.contains("before"), "{output}");
        assert!(output.contains("after"), "{output}");
    }

    #[test]
    fn a_quieter_log_filter_does_not_switch_tracing_off() {
        let provider = SdkTracerProvider::builder().build();
        let settings = TelemetrySettings {
            log_format: LogFormat::Json,
            log_filter: "warn".to_owned(),
        };
        let buffer = Buffer::default();
        let subscriber = traced_subscriber(&settings, Some(&provider), buffer.clone()).unwrap();
        let traced = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            tracing::info!("not written at warn");
            span.context().span().span_context().is_valid()
        });
        assert!(traced, "an info span is traced with the log filter at warn");
        assert!(
            buffer.0.lock().unwrap().is_empty(),
            "and no info line is written"
        );
    }

    #[test]
    fn without_an_exporter_lines_carry_no_trace_ids() {
        let line = line_under_a_continued_trace(None);
        assert!(line["spans"][0].get("trace_id").is_none(), "{line}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
    fn only_the_grpc_protocol_is_accepted() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
            let error = TraceExport::from_env("rest-api").unwrap_err();
            assert!(error.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"));
            jail.set_env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
            jail.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
            let export = TraceExport::from_env("rest-api").unwrap();
            assert_eq!(export.endpoint.as_deref(), Some("http://127.0.0.1:4317"));
            assert_eq!(export.service_name, "rest-api");
            Ok(())
        });
    }
}
