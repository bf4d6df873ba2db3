//! [`StreamerError`]: why the streamer could not be built or served. Binaries log it with its
//! cause chain (`{:#}` of `anyhow`, or walking [`std::error::Error::source`]).

use std::io;

/// Why building or running the streamer failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamerError {
    /// `streamer.listen` could not be bound.
    #[error("cannot listen on streamer.listen = {address}")]
    Bind {
        /// The setting's value.
        address: String,
        /// The socket's error.
        #[source]
        source: io::Error,
    },
    /// `backends.simulator_url` is not a valid endpoint.
    #[error("backends.simulator_url is not a valid endpoint")]
    SimulatorEndpoint(#[source] tonic::transport::Error),
    /// `backends.auth_url` is not a valid endpoint.
    #[error("backends.auth_url is not a valid endpoint")]
    AuthEndpoint(#[source] tonic::transport::Error),
    /// The HTTP server failed (accepting or reading its socket).
    #[error("the streamer's server failed")]
    Serve(#[source] io::Error),
}
