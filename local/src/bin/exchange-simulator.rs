//! The reference exchange simulator as a process: `exchange-simulator --listen 127.0.0.1:50051`.

use anyhow::Context;
use clap::Parser as _;
use session_core::config::{LogFormat, TelemetrySettings};
use session_local::cli::SimulatorArgs;
use session_local::cloudmap::SelfRegistration;
use session_local::simulator::SimulatorServer;
use session_local::{ServerTls, shutdown_signal};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = SimulatorArgs::parse();
    session_core::telemetry::init(
        &TelemetrySettings {
            log_format: LogFormat::Pretty,
            log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        },
        "exchange-simulator",
    )
    .context("setting up logs")?;
    let mut server = SimulatorServer::new(args.settings());
    let tls = args.tls.server_tls().context("reading the TLS files")?;
    let tls_mode = tls.as_ref().map_or("off", ServerTls::mode);
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls_mode, "exchange simulator listening");
    // In AWS the server registers itself in Cloud Map (the Deployment sets CLOUDMAP_*), and
    // leaves it before its port closes, so discovery stops sending it new simulators first.
    let registration = SelfRegistration::from_vars(|name| std::env::var(name).ok())
        .context("reading the Cloud Map registration variables")?;
    let registered = match registration {
        Some(registration) => {
            let registered = registration
                .register()
                .await
                .context("registering in Cloud Map")?;
            tracing::info!(instance = %registration.instance, "registered in Cloud Map");
            Some(registered)
        }
        None => None,
    };
    let shutdown = async move {
        shutdown_signal().await;
        if let Some(registered) = registered {
            match registered.withdraw().await {
                Ok(()) => tracing::info!("left Cloud Map"),
                Err(error) => tracing::warn!(%error, "could not leave Cloud Map"),
            }
        }
    };
    Box::pin(server.run(listener, shutdown))
        .await
        .context("serving")?;
    Ok(())
}
