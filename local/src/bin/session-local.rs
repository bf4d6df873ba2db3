//! The whole session service on this machine: `cargo run --profile local -p session-local`.

use std::fmt::Write as _;

use anyhow::Context;
use clap::Parser as _;
use session_core::config::{LogFormat, Settings, StoreBackend, TelemetrySettings};
use session_local::cli::{StackArgs, StackCommand};
use session_local::regions::Regions;
use session_local::shutdown_signal;
use session_local::stack::{Stack, StackSettings};
use session_streamer::StreamerSettings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = StackArgs::parse();
    if let Some(StackCommand::TicketKeys { kid }) = &args.command {
        let keys = session_local::ticket_keys::generate(kid).context("--kid")?;
        #[allow(clippy::print_stdout)] // The command's output, for a pipe or a file.
        {
            println!("{keys:#}");
        }
        return Ok(());
    }
    session_core::telemetry::init(
        &TelemetrySettings {
            log_format: LogFormat::Pretty,
            log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        },
        "session-local",
    )
    .context("setting up logs")?;
    let (regions, lag) = (args.regions, args.replication_lag());
    let mut service = Settings::load(args.config.as_deref()).context("reading settings")?;
    let streamer = StreamerSettings::load(args.config.as_deref())
        .context("reading the streamer's settings")?;
    if let Some(endpoint) = args.dynamodb_endpoint {
        service.store.backend = StoreBackend::Dynamodb;
        service.store.endpoint = Some(endpoint);
    }
    if let Some(table) = args.table {
        service.store.table_name = table;
    }
    let settings = StackSettings {
        http_api: args.http_api,
        ws_api: args.ws_api,
        sse: args.sse,
        simulator: args.simulator,
        simulator_servers: args.simulator_servers,
        cloudmap: args.cloudmap,
        cloudmap_endpoint: args.cloudmap_endpoint,
        auth: args.auth,
        web: args.web,
        appconfig: args.appconfig,
        appconfig_dir: args.appconfig_dir,
        endpoints_file: args.endpoints_file,
        streamer,
        ..StackSettings::local(service)
    };
    if regions > 1 {
        return Box::pin(run_regions(settings, regions, lag)).await;
    }
    let stack = Stack::start(settings)
        .await
        .context("starting the local stack")?;

    let endpoints = stack.endpoints();
    let token = stack.token("dev-user");
    let banner = format!(
        "\nsession-local is ready\n  web page      {web}  (open it in a browser)\n  HTTP API      {http}\n  WebSocket API {ws}?ticket=...\n  @connections  {connections}/@connections/{{id}}\n  SSE streamer  {sse}/v1/sessions/{{id}}/stream?ticket=...\n  dev tokens    POST {tokens} {{\"sub\": \"alice\"}}\n  auth gRPC     {auth}\n  simulator     {sim}\n  cloudmap      {cloudmap}  (Cloud Map API: the servers' registrations)\n  faults        POST {faults} {{\"target\": \"simulator-server-1\", \"fault\": \"kill\"}}\n  AppConfig     {appconfig}  (feature flags and runtime settings: --appconfig-dir)\n\n  a token for dev-user (1 h):\n  export TOKEN={token}\n  curl -H \"Authorization: Bearer $TOKEN\" -X POST {http}/v1/sessions -d '{{}}'\n",
        web = endpoints.web,
        http = endpoints.http_api,
        ws = endpoints.ws_api,
        connections = endpoints.connections_url,
        sse = endpoints.sse,
        tokens = endpoints.token_url,
        auth = endpoints.auth_grpc,
        sim = endpoints.simulator_servers.join(" "),
        cloudmap = endpoints.cloudmap,
        faults = endpoints.faults_url,
        appconfig = endpoints.appconfig,
    );
    eprintln!("{banner}");

    shutdown_signal().await;
    tracing::info!("stopping");
    stack.shutdown().await.context("stopping")?;
    Ok(())
}

/// `--regions N`: the regional stacks, until Ctrl-C or SIGTERM.
async fn run_regions(
    settings: StackSettings,
    count: usize,
    lag: std::time::Duration,
) -> anyhow::Result<()> {
    let regions = Regions::start(settings, count, lag)
        .await
        .context("starting the regional stacks")?;
    let mut banner = format!(
        "\nsession-local is ready: {count} regions, replication lag {lag:?}, primary local-a\n"
    );
    for region in regions.endpoints() {
        let _ = write!(
            banner,
            "  {name}\n    web page      {web}\n    HTTP API      {http}\n    WebSocket API {ws}?ticket=...\n    SSE streamer  {sse}\n    dev tokens    POST {tokens} {{\"sub\": \"alice\"}}\n",
            name = region.name,
            web = region.web,
            http = region.http_api,
            ws = region.ws_api,
            sse = region.sse,
            tokens = region.token_url,
        );
    }
    let _ = writeln!(
        banner,
        "  outages       POST {http}/_local/regions/{{name}}/fail (or /restore, /failover?to=<region>), on any region's HTTP API",
        http = regions.endpoints()[0].http_api,
    );
    eprintln!("{banner}");

    shutdown_signal().await;
    tracing::info!("stopping");
    regions.shutdown().await.context("stopping")?;
    Ok(())
}
