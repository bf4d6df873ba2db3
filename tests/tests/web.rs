//! The local stack's web page in a real browser, and the cross-origin plumbing it relies on.
//!
//! The browser test starts the stack in-process on free ports, chromedriver on a free port, and
//! headless Chromium through it (fantoccini, WebDriver over plain HTTP on loopback). It uses the
//! page as a person would — buttons and fields — and reads what the page shows. The CORS tests
//! check, over real sockets, what the browser relies on: the HTTP API emulator answers the page's
//! preflights itself and labels its responses; the streamer allows the page's origin; the
//! emulator's CORS lists are the SAM template's.
//!
//! Chromium and chromedriver are Debian packages (`chromium`, `chromium-driver`); scripts/test.sh
//! installs them. Without them the browser test fails and says how to install them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use fantoccini::Client;
use reqwest::StatusCode;
use serde_json::{Value, json};
use session_core::config::Settings;
use session_local::stack::{Stack, StackSettings};
use session_tests::appconfig_dir::AppConfigDir;
use session_tests::browser::{Chromedriver, Shown, click, start_simulator_as, until};

async fn stack() -> Stack {
    stack_with_flags(None).await
}

async fn stack_with_flags(flags: Option<&AppConfigDir>) -> Stack {
    let mut service = Settings::default();
    service.backends.retry_base_ms = Duration::from_millis(5);
    let mut settings = StackSettings::ephemeral(service);
    settings.appconfig_dir = flags.map(|dir| dir.path().to_owned());
    Stack::start(settings)
        .await
        .expect("the local stack starts")
}

async fn screenshot(page: &Client, name: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, page.screenshot().await?)?;
    eprintln!("screenshot: {}", path.display());
    Ok(path)
}

/// Both books have levels on both sides, trades arrived, and the stream is open on `transport`.
fn streaming(now: &Shown, transport: &str, events_at_least: u64) -> bool {
    let book = |symbol: &str| {
        let b = &now.value["books"][symbol];
        b["bids"].as_u64().unwrap_or(0) > 0 && b["asks"].as_u64().unwrap_or(0) > 0
    };
    now.text("state") == "open"
        && now.text("transport") == transport
        && now.number("events") >= events_at_least
        && book("BTC-USD")
        && book("ETH-USD")
        && now.count("trades") > 0
}

/// The person's walk through the page: token, session, simulator, SSE, drop, WebSocket, drop.
async fn walk_through(page: &Client, stack: &Stack) -> Result<()> {
    let web = &stack.endpoints().web;
    page.goto(web).await?;
    until(page, "the endpoints read from /config.json", |now| {
        now.value["ready"] == true
    })
    .await?;

    start_simulator_as(page, "alice", 40).await?;

    // SSE (the default transport): books and trades arrive.
    click(page, "connect").await?;
    let sse = until(page, "books and trades over SSE", |now| {
        streaming(now, "SSE", 20)
    })
    .await?;
    ensure!(sse.number("gaps") == 0, "{sse:#?}");

    // Drop: the stream resumes through the reconnect endpoint with no gap.
    click(page, "drop").await?;
    let before = sse.number("events");
    let resumed = until(page, "the SSE stream resumed and going on", |now| {
        now.number("resumes") == 1
            && now.notices_with("Resumed after") == 1
            && now.notices_with("promises a replay") == 1
            && streaming(now, "SSE", before + 40)
    })
    .await?;
    ensure!(resumed.number("gaps") == 0, "a gap over SSE: {resumed:#?}");
    screenshot(page, "web-page-sse.png").await?;

    // Switch to WebSocket while connected: the same stream goes on from the last event id.
    click(page, "transport-ws").await?;
    let before = resumed.number("events");
    let ws = until(
        page,
        "the stream on WebSocket, heartbeats answered",
        |now| {
            now.number("resumes") == 2
                && now.notices_with("Resumed after") == 2
                && now.text("heartbeats").contains("acked 2")
                && now.text("rtt").contains("server")
                && streaming(now, "WebSocket", before + 40)
        },
    )
    .await?;
    ensure!(
        ws.number("gaps") == 0,
        "a gap switching to WebSocket: {ws:#?}"
    );
    ensure!(
        ws.text("stream_url").contains("compression: deflate"),
        "the WebSocket pushes inflated from deflate: {ws:#?}"
    );

    // Drop the WebSocket: same promise.
    click(page, "drop").await?;
    let before = ws.number("events");
    let resumed = until(page, "the WebSocket stream resumed and going on", |now| {
        now.number("resumes") == 3
            && now.notices_with("Resumed after") == 3
            // The new connection's heartbeats: the second one gives the server's round trip.
            && now.text("heartbeats").contains("acked 2")
            && streaming(now, "WebSocket", before + 40)
    })
    .await?;
    ensure!(
        resumed.number("gaps") == 0,
        "a gap over WebSocket: {resumed:#?}"
    );
    ensure!(
        resumed.number("resets") == 0,
        "a reset where a replay was promised: {resumed:#?}"
    );
    // Chromium asks for gzip by itself: the page's EventSource decoded gzip responses.
    let metrics = reqwest::get(format!("{}/metrics", stack.endpoints().sse))
        .await?
        .text()
        .await?;
    let compressed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("streamer_sse_compressed_responses_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    ensure!(compressed > 0.0, "no gzip SSE response reached the browser");
    screenshot(page, "web-page.png").await?;
    eprintln!(
        "the page streamed {} events over SSE and WebSocket, resumed 3 times, gaps {}, duplicates dropped {}",
        resumed.text("events"),
        resumed.text("gaps"),
        resumed.text("duplicates"),
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_streams_books_and_trades_over_sse_and_websocket_and_resumes_a_drop_without_a_gap()
-> Result<()> {
    let started = Instant::now();
    // `ws_compression` on: the page asks for deflate, so its WebSocket pushes come as binary
    // frames it inflates with DecompressionStream.
    let flags = AppConfigDir::new();
    flags.write("flags", r#"{"ws_compression": {"enabled": true}}"#);
    let stack = stack_with_flags(Some(&flags)).await;
    let driver = Chromedriver::start().await?;
    let page = driver.browser().await?;

    let walked = tokio::time::timeout(Duration::from_secs(120), walk_through(&page, &stack)).await;

    let _ = page.close().await;
    drop(driver);
    stack.shutdown().await?;
    walked.context("the walk through the page took over 120 s")??;
    eprintln!("the browser test took {:?}", started.elapsed());
    Ok(())
}

/// The text of the state cell of `target`'s row in the page's faults panel, once it reads
/// `wanted` (within 10 s).
async fn fault_state(page: &Client, target: &str, wanted: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let css = format!("#fault-rows tr[data-target=\"{target}\"] td.fault-state");
        let text = match page.find(fantoccini::Locator::Css(&css)).await {
            Ok(cell) => cell.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text == wanted {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{target} reads {text:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_faults_panel_kills_and_restores_a_simulator_server() -> Result<()> {
    let stack = stack().await;
    let driver = Chromedriver::start().await?;
    let page = driver.browser().await?;

    let clicked = async {
        page.goto(&stack.endpoints().web).await?;
        fault_state(&page, "simulator-server-1", "up").await?;
        click(&page, "fault-simulator-server-1").await?;
        fault_state(&page, "simulator-server-1", "killed").await?;
        let killed = stack.fleet().simulator(1).is_none();
        click(&page, "fault-simulator-server-1").await?;
        fault_state(&page, "simulator-server-1", "up").await?;
        anyhow::Ok(killed)
    };
    let killed = tokio::time::timeout(Duration::from_secs(60), clicked).await;

    let _ = page.close().await;
    drop(driver);
    let restored = stack.fleet().simulator(1).is_some();
    stack.shutdown().await?;
    assert!(
        killed.context("the faults panel took over 60 s")??,
        "killed in the stack"
    );
    assert!(restored, "restored in the stack");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cross-origin plumbing, over real sockets

#[tokio::test]
async fn the_page_and_its_config_are_served_from_their_own_origin() -> Result<()> {
    let stack = stack().await;
    let endpoints = stack.endpoints().clone();

    let page = reqwest::get(&endpoints.web).await?;
    let config: Value = reqwest::get(format!("{}/config.json", endpoints.web))
        .await?
        .json()
        .await?;

    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await?.contains("Drop connection"));
    assert_eq!(config["http_api"], endpoints.http_api);
    assert_eq!(config["token_url"], endpoints.token_url);
    assert_eq!(config["ws_api"], endpoints.ws_api);
    assert_eq!(config["sse"], endpoints.sse);
    assert_eq!(config["faults_url"], endpoints.faults_url);
    assert_ne!(endpoints.web, endpoints.http_api);
    stack.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_http_api_answers_the_pages_preflights_itself_and_labels_its_responses() -> Result<()> {
    let stack = stack().await;
    let endpoints = stack.endpoints().clone();
    let origin = endpoints.web.as_str();
    let http = reqwest::Client::new();
    let preflight = |path: &str, from: &str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}{path}", endpoints.http_api),
        )
        .header("origin", from)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
    };

    let allowed = preflight("/v1/sessions", origin).await?;
    let token_route = preflight("/_local/tokens", origin).await?;
    let refused = preflight("/v1/sessions", "http://127.0.0.1:1").await?;
    let unauthenticated = http
        .get(format!("{}/v1/sessions", endpoints.http_api))
        .header("origin", origin)
        .send()
        .await?;
    let created = http
        .post(format!("{}/v1/sessions", endpoints.http_api))
        .header("origin", origin)
        .bearer_auth(stack.token("carol"))
        .json(&json!({}))
        .send()
        .await?;

    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], origin);
    assert_eq!(h["access-control-allow-methods"], "GET,POST,DELETE");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization,content-type,idempotency-key,traceparent,tracestate"
    );
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(token_route.headers()["access-control-allow-origin"], origin);
    assert_eq!(refused.status(), StatusCode::NO_CONTENT);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unauthenticated.headers()["access-control-allow-origin"],
        origin
    );
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["access-control-allow-origin"], origin);
    assert_eq!(
        created.headers()["access-control-expose-headers"],
        "location,x-session-home,x-replica-lag-ms,idempotency-region"
    );
    stack.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_streamer_allows_the_pages_origin_under_both_loopback_names() -> Result<()> {
    let stack = stack().await;
    let endpoints = stack.endpoints().clone();
    let port = endpoints.web.rsplit(':').next().unwrap_or_default();
    let url = format!(
        "{}/v1/sessions/ses_01JG7Q3ZKXW4T9M2R8V6C5N1HA/stream",
        endpoints.sse
    );
    let http = reqwest::Client::new();

    for origin in [endpoints.web.clone(), format!("http://localhost:{port}")] {
        let answer = http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", &origin)
            .header("access-control-request-method", "GET")
            .send()
            .await?;
        assert_eq!(
            answer.headers()["access-control-allow-origin"],
            origin.as_str()
        );
    }
    stack.shutdown().await?;
    Ok(())
}

#[test]
fn the_emulators_cors_lists_are_the_templates() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let template = serde_json::to_value(yaml)?;
    // `CorsConfiguration: !If [HasCors, {...}, !Ref AWS::NoValue]`: the configuration is the
    // first branch (tags become one-entry maps keyed by the tag).
    let configuration =
        &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]["!If"][1];
    ensure!(
        configuration.is_object(),
        "no CorsConfiguration under !If in {}",
        path.display()
    );
    let words = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|w| w.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };

    let emulated = session_local::http_api::CorsConfiguration::default();

    assert_eq!(
        words(&configuration["AllowMethods"]),
        emulated.allow_methods
    );
    assert_eq!(
        words(&configuration["AllowHeaders"]),
        emulated.allow_headers
    );
    assert_eq!(
        words(&configuration["ExposeHeaders"]),
        emulated.expose_headers
    );
    assert_eq!(
        configuration["MaxAge"].as_u64(),
        emulated.max_age.map(|a| a.as_secs())
    );
    Ok(())
}
