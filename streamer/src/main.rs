//! The streamer's process: settings, telemetry, serve until SIGTERM or Ctrl-C, drain, exit 0.

use anyhow::Context as _;
use session_core::component::Component;
use session_core::config::Settings;
use session_streamer::{Streamer, StreamerParts, StreamerSettings};
use tracing::{error, info};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let result = serve().await;
    if let Err(e) = &result {
        // The whole cause chain, on one line of the log (telemetry may not be up: stderr too).
        error!(error = format!("{e:#}"), "streamer failed");
    }
    result
}

async fn serve() -> anyhow::Result<()> {
    let config = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    let mut settings = Settings::load(config.as_deref()).context("configuration")?;
    let streamer = StreamerSettings::load(config.as_deref()).context("configuration")?;
    session_core::telemetry::init(
        &settings.telemetry,
        session_core::component::Component::Streamer.name(),
    )
    .context("telemetry")?;
    // Only when a *_secret_arn setting is set (in Kubernetes, Secrets are mounted as files).
    session_core::secrets::load_secrets(&mut settings, || {
        session_core::secrets::client_from_env(Component::Streamer)
    })
    .await
    .context("configuration")?;
    let parts = StreamerParts::from_settings(settings, streamer)
        .await
        .context("building the streamer")?;
    let streamer = Streamer::bind(parts)
        .await
        .context("binding the streamer")?;
    info!(address = %streamer.local_addr()?, "streamer listening");
    streamer
        .run(shutdown_signal())
        .await
        .context("serving streams")?;
    info!("streamer stopped");
    Ok(())
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
