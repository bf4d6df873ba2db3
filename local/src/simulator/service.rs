//! The gRPC services of the simulator: `SimulatorControl`, `MarketData` and `FaultInjection`.
//!
//! `SimulatorControl` and `FaultInjection` implement the generated traits. `MarketData` is
//! wired by hand (the same shape as the generated `MarketDataServer`) with a codec whose
//! response items are already-encoded `MarketEvent`s: events are encoded once by the instance
//! and every subscriber sends the same bytes. The wire contract is unchanged: a client sees
//! ordinary `simulator.v1.MarketEvent` messages.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use prost::bytes::{BufMut, Bytes};
use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::fault_injection_server::FaultInjection;
use session_proto::simulator::v1::simulator_control_server::SimulatorControl;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, BoxStream, Service, StdError, http};
use tonic::server::{Grpc, NamedService, ServerStreamingService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstDecoder;
use tracing::{instrument, warn};

use super::registry::{SimulatorError, Simulators};

impl From<SimulatorError> for Status {
    fn from(error: SimulatorError) -> Self {
        let message = error.to_string();
        match error {
            SimulatorError::Invalid(_) => Self::invalid_argument(message),
            SimulatorError::NotFound(_) => Self::not_found(message),
            SimulatorError::Stopped(_) => Self::failed_precondition(message),
            SimulatorError::Unavailable => Self::unavailable(message),
            SimulatorError::TooMany(_) => Self::resource_exhausted(message),
        }
    }
}

/// `simulator.v1.SimulatorControl` over the registry.
#[derive(Debug, Clone)]
pub struct ControlService {
    simulators: Arc<Simulators>,
}

impl ControlService {
    /// The service over `simulators`.
    pub fn new(simulators: Arc<Simulators>) -> Self {
        Self { simulators }
    }
}

#[tonic::async_trait]
impl SimulatorControl for ControlService {
    #[instrument(skip_all, fields(symbols = ?request.get_ref().symbols))]
    async fn start(
        &self,
        request: Request<pb::StartRequest>,
    ) -> Result<Response<pb::SimulatorInfo>, Status> {
        let info = self.simulators.start(request.get_ref()).inspect_err(|e| {
            warn!(error = %e, "start refused");
        })?;
        Ok(Response::new(info))
    }

    #[instrument(skip_all, fields(simulator_id = %request.get_ref().simulator_id))]
    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::SimulatorInfo>, Status> {
        Ok(Response::new(
            self.simulators.stop(&request.get_ref().simulator_id)?,
        ))
    }

    #[instrument(skip_all, fields(simulator_id = %request.get_ref().simulator_id))]
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::SimulatorInfo>, Status> {
        Ok(Response::new(
            self.simulators.get(&request.get_ref().simulator_id)?,
        ))
    }

    #[instrument(skip_all)]
    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let request = request.get_ref();
        Ok(Response::new(
            self.simulators
                .list(request.page_size, &request.page_token)?,
        ))
    }

    #[instrument(skip_all, fields(simulator_id = %request.get_ref().simulator_id, symbol = %request.get_ref().symbol))]
    async fn get_book(
        &self,
        request: Request<pb::GetBookRequest>,
    ) -> Result<Response<pb::GetBookResponse>, Status> {
        let request = request.get_ref();
        Ok(Response::new(self.simulators.book(
            &request.simulator_id,
            &request.symbol,
            request.depth,
        )?))
    }
}

/// `simulator.v1.FaultInjection` over the registry (local reference simulator only).
#[derive(Debug, Clone)]
pub struct FaultService {
    simulators: Arc<Simulators>,
}

impl FaultService {
    /// The service over `simulators`.
    pub fn new(simulators: Arc<Simulators>) -> Self {
        Self { simulators }
    }
}

#[tonic::async_trait]
impl FaultInjection for FaultService {
    #[instrument(skip_all, fields(simulator_id = %request.get_ref().simulator_id))]
    async fn end_streams(
        &self,
        request: Request<pb::EndStreamsRequest>,
    ) -> Result<Response<pb::FaultAccepted>, Status> {
        let r = request.get_ref();
        self.simulators.end_streams(
            &r.simulator_id,
            r.after_events,
            r.open_streams,
            r.next_streams,
        )?;
        Ok(Response::new(pb::FaultAccepted {}))
    }

    #[instrument(skip_all, fields(simulator_id = %request.get_ref().simulator_id))]
    async fn stall_streams(
        &self,
        request: Request<pb::StallStreamsRequest>,
    ) -> Result<Response<pb::FaultAccepted>, Status> {
        let r = request.get_ref();
        self.simulators.stall_streams(
            &r.simulator_id,
            Duration::from_millis(u64::from(r.duration_millis)),
        )?;
        Ok(Response::new(pb::FaultAccepted {}))
    }

    #[instrument(skip_all, fields(simulator_id = %request.get_ref().simulator_id))]
    async fn restart(
        &self,
        request: Request<pb::RestartRequest>,
    ) -> Result<Response<pb::SimulatorInfo>, Status> {
        Ok(Response::new(
            self.simulators.restart(&request.get_ref().simulator_id)?,
        ))
    }

    #[instrument(skip_all)]
    async fn fail_starts(
        &self,
        request: Request<pb::FailStartsRequest>,
    ) -> Result<Response<pb::FaultAccepted>, Status> {
        let r = request.get_ref();
        self.simulators
            .fail_starts(r.count, Duration::from_millis(u64::from(r.duration_millis)));
        Ok(Response::new(pb::FaultAccepted {}))
    }

    #[instrument(skip_all)]
    async fn clear_faults(
        &self,
        _request: Request<pb::ClearFaultsRequest>,
    ) -> Result<Response<pb::FaultAccepted>, Status> {
        self.simulators.clear_faults();
        Ok(Response::new(pb::FaultAccepted {}))
    }
}

/// Sends already-encoded messages as they are; decodes requests with prost.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedCodec;

/// Writes an encoded message's bytes.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = pb::SubscribeRequest;
    type Encoder = EncodedEncoder;
    type Decoder = ProstDecoder<pb::SubscribeRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

/// `simulator.v1.MarketData`, sending each event's bytes as encoded once by its instance.
#[derive(Debug, Clone)]
pub struct MarketDataService {
    simulators: Arc<Simulators>,
}

impl MarketDataService {
    /// The service over `simulators`.
    pub fn new(simulators: Arc<Simulators>) -> Self {
        Self { simulators }
    }
}

impl NamedService for MarketDataService {
    const NAME: &'static str = "simulator.v1.MarketData";
}

/// The `Subscribe` method.
struct Subscribe(Arc<Simulators>);

impl ServerStreamingService<pb::SubscribeRequest> for Subscribe {
    type Response = Bytes;
    type ResponseStream = BoxStream<Bytes>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<pb::SubscribeRequest>) -> Self::Future {
        let simulators = Arc::clone(&self.0);
        Box::pin(async move {
            let request = request.into_inner();
            let span = tracing::info_span!("subscribe", simulator_id = %request.simulator_id);
            let _entered = span.enter();
            let stream = simulators.subscribe(&request.simulator_id, request.resume_from)?;
            let mut response = Response::new(stream.boxed());
            if let Some(value) = simulators
                .start_trace(&request.simulator_id)
                .and_then(|t| t.parse().ok())
            {
                response
                    .metadata_mut()
                    .insert(session_core::telemetry::START_TRACEPARENT, value);
            }
            Ok(response)
        })
    }
}

impl<B> Service<http::Request<B>> for MarketDataService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let simulators = Arc::clone(&self.simulators);
        if request.uri().path() == "/simulator.v1.MarketData/Subscribe" {
            Box::pin(async move {
                let mut grpc = Grpc::new(EncodedCodec);
                Ok(grpc.server_streaming(Subscribe(simulators), request).await)
            })
        } else {
            Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) })
        }
    }
}
