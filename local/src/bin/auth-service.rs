//! The reference auth service as a process: `auth-service --listen 127.0.0.1:50052`.

use anyhow::Context;
use clap::Parser as _;
use session_core::config::{LogFormat, TelemetrySettings};
use session_local::auth::AuthServer;
use session_local::cli::AuthArgs;
use session_local::{ServerTls, shutdown_signal};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = AuthArgs::parse();
    // Logs to stderr: stdout carries the tokens and JWKS asked for. Spans go where the
    // OpenTelemetry variables say (kept alive to the end of `main`).
    let traces = session_core::telemetry::TraceExport::from_env("auth-service")
        .and_then(|export| export.provider())
        .context("setting up traces")?;
    let logs = session_core::telemetry::traced_subscriber(
        &TelemetrySettings {
            log_format: LogFormat::Pretty,
            log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        },
        traces.as_ref(),
        std::io::stderr,
    )
    .context("setting up logs")?;
    tracing::subscriber::set_global_default(logs).context("setting up logs")?;
    let mut server = AuthServer::new(args.settings()).context("generating the signing key")?;
    let tls = args.tls.server_tls().context("reading the TLS files")?;
    let tls_mode = tls.as_ref().map_or("off", ServerTls::mode);
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    print_startup_output(&server, &args)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, kid = %server.auth().current_kid(), tls = tls_mode, "auth service listening");
    server
        .run(listener, shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}

/// Prints the requested tokens (`SUBJECT TOKEN`, one a line) and the JWKS: the point of the
/// flags, so stdout it is.
#[allow(clippy::print_stdout)]
fn print_startup_output(server: &AuthServer, args: &AuthArgs) -> anyhow::Result<()> {
    for request in &args.tokens {
        let token = server
            .auth()
            .issue(&request.subject, &request.scopes, args.token_ttl())
            .context("issuing a token")?;
        println!("{} {token}", request.subject);
    }
    if args.print_jwks {
        println!("{}", server.auth().jwks());
    }
    Ok(())
}
