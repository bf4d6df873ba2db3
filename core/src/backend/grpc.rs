//! [`SimulatorBackend`] over `simulator.v1.SimulatorControl`: every call has a deadline,
//! transient failures are retried with full jitter, and a circuit breaker fails fast while the
//! backend is down.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_proto::simulator::v1 as pb;
use session_proto::simulator::v1::simulator_control_client::SimulatorControlClient;
use tonic::{Code, Status};

use super::{BackendError, BackendSimulator, SimulatorBackend, StartSpec, channel};
use crate::domain::{BookView, EventId, Level, SimulatorStatus, Symbol};
use crate::resilience::{BreakerState, CircuitBreaker, ErrorClass, RetryPolicy, retry};

/// Talks to one simulator service.
#[derive(Debug, Clone)]
pub struct GrpcSimulatorBackend {
    client: SimulatorControlClient<channel::TracedChannel>,
    retry: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
}

impl GrpcSimulatorBackend {
    /// The backend at `backends.simulator_url` of `settings`, over TLS as `backends.tls` says.
    /// Connects lazily: building it does no I/O, so a Lambda's cold start does not wait for the
    /// backend.
    ///
    /// # Errors
    /// The URL is not a valid endpoint URL, or the TLS material does not parse.
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Self, tonic::transport::Error> {
        Self::at(&settings.backends.simulator_url, &settings.backends)
    }

    /// The simulator server at `url`, on one HTTP/2 channel with the deadlines, keep-alive and
    /// concurrency limit of `backends`, and a circuit breaker of its own. Connects lazily.
    ///
    /// # Errors
    /// The URL is not a valid endpoint URL, or the TLS material does not parse.
    pub fn at(
        url: &str,
        backends: &crate::config::BackendSettings,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = channel::server_endpoint(url, backends)?.connect_lazy();
        Ok(Self {
            client: SimulatorControlClient::new(channel::traced(channel)),
            retry: backends.retry_policy(),
            breaker: Arc::new(backends.breaker()),
        })
    }

    /// Runs one RPC with retries, behind the breaker.
    async fn call<T, F, Fut>(&self, rpc: F) -> Result<T, BackendError>
    where
        F: Fn(SimulatorControlClient<channel::TracedChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        retry(self.retry, || async {
            match self
                .breaker
                .call(async { rpc(self.client.clone()).await.map_err(from_status) })
                .await
            {
                Ok(response) => Ok(response.into_inner()),
                Err(Ok(e)) => Err(e),
                Err(Err(open)) => Err(BackendError::CircuitOpen(open.to_string())),
            }
        })
        .await
    }
}

#[async_trait]
impl SimulatorBackend for GrpcSimulatorBackend {
    async fn start(&self, spec: &StartSpec) -> Result<BackendSimulator, BackendError> {
        let request = pb::StartRequest {
            symbols: spec.symbols.iter().map(|s| s.as_str().to_owned()).collect(),
            seed: spec.seed,
            events_per_second: spec.events_per_second,
            client_token: spec.client_token.to_string(),
        };
        let info = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.start(request).await }
            })
            .await?;
        from_info(info)
    }

    async fn stop(&self, backend_id: &str) -> Result<BackendSimulator, BackendError> {
        let request = pb::StopRequest {
            simulator_id: backend_id.to_owned(),
        };
        let info = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.stop(request).await }
            })
            .await?;
        from_info(info)
    }

    async fn get(&self, backend_id: &str) -> Result<BackendSimulator, BackendError> {
        let request = pb::GetRequest {
            simulator_id: backend_id.to_owned(),
        };
        let info = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.get(request).await }
            })
            .await?;
        from_info(info)
    }

    async fn book(&self, backend_id: &str, symbol: &Symbol) -> Result<BookView, BackendError> {
        let request = pb::GetBookRequest {
            simulator_id: backend_id.to_owned(),
            symbol: symbol.as_str().to_owned(),
            depth: 0,
        };
        let response = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.get_book(request).await }
            })
            .await?;
        let book = response
            .book
            .ok_or_else(|| BackendError::Unavailable("the backend sent no book".to_owned()))?;
        let levels = |levels: Vec<pb::PriceLevel>| {
            levels
                .into_iter()
                .map(|l| Level {
                    price: l.price,
                    quantity: l.quantity,
                })
                .collect()
        };
        Ok(BookView {
            symbol: book.symbol,
            at: EventId {
                epoch: response.epoch,
                sequence: response.sequence,
            },
            price_scale: book.price_scale,
            quantity_scale: book.quantity_scale,
            bids: levels(book.bids),
            asks: levels(book.asks),
        })
    }

    async fn probe(&self, backend_id: &str, deadline: Duration) -> Result<(), BackendError> {
        let mut request = tonic::Request::new(pb::GetRequest {
            simulator_id: backend_id.to_owned(),
        });
        request.set_timeout(deadline);
        let attempt = async {
            match tokio::time::timeout(deadline, self.client.clone().get(request)).await {
                Ok(answer) => answer.map(drop).map_err(from_status),
                Err(_) => Err(BackendError::Unavailable(format!(
                    "no answer within {deadline:?}"
                ))),
            }
        };
        self.breaker.call(attempt).await.map_err(|e| match e {
            Ok(e) => e,
            Err(open) => BackendError::CircuitOpen(open.to_string()),
        })
    }

    fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }
}

/// Maps a gRPC status to what the caller can do about it.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(from_status)`
fn from_status(status: Status) -> BackendError {
    let message = channel::status_text(&status);
    match (status.code(), channel::status_class(status.code())) {
        (Code::NotFound, _) => BackendError::NotFound(message),
        (_, ErrorClass::Permanent) => BackendError::Refused(message),
        (code, ErrorClass::Transient) => BackendError::Unavailable(format!("{code:?}: {message}")),
    }
}

fn from_info(info: pb::SimulatorInfo) -> Result<BackendSimulator, BackendError> {
    let status = match info.state() {
        pb::SimulatorState::Starting => SimulatorStatus::Starting,
        pb::SimulatorState::Running => SimulatorStatus::Running,
        pb::SimulatorState::Stopping => SimulatorStatus::Stopping,
        pb::SimulatorState::Stopped => SimulatorStatus::Stopped,
        pb::SimulatorState::Failed => SimulatorStatus::Failed,
        pb::SimulatorState::Unspecified => {
            return Err(BackendError::Unavailable(
                "the backend reported no simulator state".to_owned(),
            ));
        }
    };
    Ok(BackendSimulator {
        backend_id: info.simulator_id,
        status,
        position: EventId {
            epoch: info.epoch,
            sequence: info.sequence,
        },
        reason: (!info.reason.is_empty()).then_some(info.reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::Classify as _;

    #[test]
    fn only_passing_failures_are_transient() {
        assert!(from_status(Status::unavailable("down")).is_transient());
        assert!(from_status(Status::deadline_exceeded("slow")).is_transient());
        assert!(!from_status(Status::invalid_argument("bad symbol")).is_transient());
        assert_eq!(
            from_status(Status::not_found("sim_x")),
            BackendError::NotFound("sim_x".to_owned())
        );
    }
}
