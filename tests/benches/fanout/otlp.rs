//! An OTLP/gRPC trace receiver that counts and drops what it gets: the collector of the traced
//! streamer target, so tracing costs what it costs in production (spans built, batched and
//! exported over gRPC) without a real collector's CPU in the measurement.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// The receiver: spans counted, then dropped. Stops when dropped.
#[derive(Debug)]
pub(crate) struct Sink {
    spans: Arc<AtomicU64>,
    endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone)]
struct Counter(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Counter {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Sink {
    /// Serves on a free loopback port.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(AtomicU64::new(0));
        let service = TraceServiceServer::new(Counter(spans.clone()));
        let task = tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener))
                .await;
        });
        Ok(Self {
            spans,
            endpoint,
            task,
        })
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for the traced process.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Spans received so far.
    pub(crate) fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
